"""What operators read and clear on the Redis transport (the `QueueAdmin` part).

Keys read or cleared here (the whole layout is at the top of `redis.py`): `<p>:queues`,
`<p>:q:<queue>`, `<p>:delayed:<queue>`, `<p>:msg`, `<p>:redelivered`, `<p>:consumers`,
`<p>:consumer:<cid>`, `<p>:reserved:<cid>` and `<p>:dead`. Nothing here is on a node's hot
path: `queue_stats` is three round trips whatever the number of queues.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

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
        replies = pipe.execute()
        if now is None:
            (seconds, micros), *replies = replies
            now = seconds + micros / 1e6
        known, consumer_ids, dead = replies
        return now, set(known), consumer_ids, dead

    def _count_consumers(self, consumer_ids: list[str], stats: dict[str, QueueStats]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for cid in consumer_ids:
            pipe.get(self._key("consumer", cid))
            pipe.hvals(self._key("reserved", cid))
        replies = pipe.execute()
        for info_json, held in zip(replies[::2], replies[1::2], strict=True):
            queues = json.loads(info_json).get("queues", []) if info_json else []
            for queue in dict.fromkeys(queues):
                stats.setdefault(queue, QueueStats(queue)).consumers += 1
            for value in held:
                queue = value.split("|", 5)[5]
                stats.setdefault(queue, QueueStats(queue)).reserved += 1

    def _count_messages(self, now: float, stats: dict[str, QueueStats]) -> None:
        names = sorted(stats)
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            delayed = self._key("delayed", name)
            pipe.zcard(self._key("q", name))
            pipe.zcount(delayed, "-inf", now)
            pipe.zcount(delayed, f"({now}", "+inf")
        replies = pipe.execute()
        for index, name in enumerate(names):
            ready, due, scheduled = replies[index * 3:index * 3 + 3]
            stats[name].ready += ready + due
            stats[name].scheduled += scheduled

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        if limit <= 0:
            return []
        entries = self.client.lrange(self._key("dead"), 0, limit - 1)
        letters = []
        for text in entries:
            entry = json.loads(text)
            letters.append(DeadLetter(entry["id"], entry["queue"], entry["body"],
                                      entry["reason"], float(entry["at"])))
        return letters
