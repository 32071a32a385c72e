"""What operators read and clear on the Redis transport (the `QueueAdmin` part).

Keys read or cleared here (the whole layout is at the top of `redis.py`): `<p>:queues`,
`<p>:q:<queue>`, `<p>:delayed:<queue>`, `<p>:msg`, `<p>:redelivered`, `<p>:consumers`,
`<p>:consumer:<cid>`, `<p>:reserved:<cid>` and `<p>:dead`. Nothing here is on a node's hot
path: `queue_stats` is three round trips whatever the number of queues.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import redis

from fleet.engine.transport.base import DEAD_LETTER_QUEUE, DeadLetter, QueueStats
from fleet.engine.transport.redis_store import RedisStore

#: Messages deleted per purge script call: bounds how long one call holds the server.
PURGE_CHUNK = 1000


class RedisQueueAdmin(RedisStore):
    """The `QueueAdmin` protocol: purge, queue statistics and the dead letters."""

    def purge(self, queues: Sequence[str]) -> int:
        count = 0
        for queue in dict.fromkeys(queues):
            if queue == DEAD_LETTER_QUEUE:
                count += self._purge_dead_letters()
            while deleted := self._call("purge", [self.prefix], [queue, PURGE_CHUNK]):
                count += deleted
        return count

    def _purge_dead_letters(self) -> int:
        pipe = self.client.pipeline(transaction=True)
        pipe.llen(self._key("dead"))
        pipe.delete(self._key("dead"))
        return pipe.execute()[0]

    def queue_stats(self) -> list[QueueStats]:
        """Every queue ever put to or consumed, sorted by name; three round trips.

        `ready` counts scheduled messages whose eta has passed too (they are promoted on
        the next reserve); `reserved` and `consumers` count every registered consumer
        (one that died is counted until some node's `recover` runs).
        """
        now, known, consumer_ids, dead = self._stats_overview()
        stats = {name: QueueStats(name) for name in known}
        self._count_consumers(consumer_ids, stats)
        self._count_messages(now, stats)
        if dead:
            stats[DEAD_LETTER_QUEUE] = QueueStats(DEAD_LETTER_QUEUE, ready=dead)
        return [stats[name] for name in sorted(stats)]

    def _stats_overview(self) -> tuple[float, set[str], list[str], int]:
        """The time (by the clock: the server's TIME in the same round trip by default),
        the known queues, the consumer ids and the number of dead letters."""
        pipe = self.client.pipeline(transaction=False)
        now = self.now(pipe)
        pipe.smembers(self._key("queues"))
        pipe.zrange(self._key("consumers"), 0, -1)
        pipe.llen(self._key("dead"))
        replies = pipe.execute(raise_on_error=False)
        if now is None:
            (seconds, micros), *replies = replies
            now = seconds + micros / 1e6
        # (a key of another type, not written by fleet, counts as empty here: the scripts
        # set it aside the next time they meet it)
        known, consumer_ids, dead = [_or(reply, empty) for reply, empty in
                                     zip(replies, (set(), [], 0), strict=True)]
        return now, set(known), consumer_ids, dead

    def _count_consumers(self, consumer_ids: list[str], stats: dict[str, QueueStats]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for cid in consumer_ids:
            pipe.get(self._key("consumer", cid))
            pipe.hvals(self._key("reserved", cid))
        replies = pipe.execute(raise_on_error=False)
        for info_json, held in zip(replies[::2], replies[1::2], strict=True):
            for queue in dict.fromkeys(consumer_queues(_or(info_json, None))):
                stats.setdefault(queue, QueueStats(queue)).consumers += 1
            for value in _or(held, []):
                parts = value.split("|", 5)
                if len(parts) == 6 and parts[5]:  # (a reservation fleet did not write: none)
                    stats.setdefault(parts[5], QueueStats(parts[5])).reserved += 1

    def _count_messages(self, now: float, stats: dict[str, QueueStats]) -> None:
        names = sorted(stats)
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            delayed = self._key("delayed", name)
            pipe.zcard(self._key("q", name))
            pipe.zcount(delayed, "-inf", now)
            pipe.zcount(delayed, f"({now}", "+inf")
        replies = [_or(reply, 0) for reply in pipe.execute(raise_on_error=False)]
        for index, name in enumerate(names):
            ready, due, scheduled = replies[index * 3:index * 3 + 3]
            stats[name].ready += ready + due
            stats[name].scheduled += scheduled

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        if limit <= 0:
            return []
        try:
            entries = self.client.lrange(self._key("dead"), 0, limit - 1)
        except redis.exceptions.ResponseError:
            return []  # not a list (not written by fleet): the scripts set it aside
        return [dead_letter_from(text) for text in entries]


def _or(reply: Any, empty: Any) -> Any:
    """A pipeline's reply, or `empty` for an error reply (a key of another type)."""
    return empty if isinstance(reply, Exception) else reply


def consumer_queues(info_json: str | None) -> list[str]:
    """The queues in a consumer's stored JSON; none when it is missing or not fleet's."""
    try:
        queues = json.loads(info_json).get("queues", []) if info_json else []
    except (ValueError, AttributeError, RecursionError):
        return []
    return [queue for queue in queues if isinstance(queue, str)] \
        if isinstance(queues, list) else []


def dead_letter_from(text: str) -> DeadLetter:
    """A dead-letter entry (JSON {id, queue, body, reason, at}); one fleet did not write
    is shown as it is, with a reason saying so."""
    try:
        entry = json.loads(text)
        fields = [entry[key] for key in ("id", "queue", "body", "reason")]
        at = float(entry["at"])
        if all(isinstance(field, str) for field in fields) and math.isfinite(at):
            return DeadLetter(*fields, at)
    except (ValueError, TypeError, KeyError, RecursionError):
        pass
    return DeadLetter("", "", text, "an entry of the dead-letter list that fleet did not "
                      "write", 0.0)
