"""Durable revokes on a node: read from the broker by number, never by listing keys.

A client's revoke call takes the next number of the `revoked.version` counter and stores its
ids under `revoked.batch:<number>`, with the revoke's expiry (`fleet.engine.commands`
`store_revokes`). A node reads:

* when it becomes ready, the newest batches, going back until it holds `worker_revokes_max`
  ids or meets a whole chunk of batches that expired (they expire in about the order they
  were written);
* at each heartbeat, the counter (one read), and when it moved, only the batches numbered
  after the last one it read. A batch whose number was taken but that is not stored yet (the
  client writes it just after) is looked for again for a while (MISSING_GRACE).

So loading costs a few reads whatever the store holds (loading by prefix scanned the whole
Redis keyspace on every node after every revoke). Ids go into the node's `RevokedSet`, each
until its revoke expires. A counter or a batch fleet did not write is skipped with a
warning, never fatal.
"""

from __future__ import annotations

import logging
import math
import time
from typing import TYPE_CHECKING, Any

from fleet.engine.commands import REVOKE_BATCH_PREFIX, REVOKE_VERSION_KEY
from fleet.engine.message import MAX_NAME, parse_json

if TYPE_CHECKING:
    from fleet.engine.worker import Node

log = logging.getLogger("fleet.control")

#: Batches read per round trip.
CHUNK = 500
#: Most batches one heartbeat reads (a burst of revoke calls is caught up over a few).
MOST_PER_REFRESH = 20 * CHUNK
#: Seconds a missing batch (its number taken, not written yet) is looked for again.
MISSING_GRACE = 30.0
#: Largest batch read (its ids).
BATCH_SIZE = 16 * 1024 * 1024


class DurableRevokes:
    """Keeps a node's revoked set current with the broker's revoke batches."""

    def __init__(self, node: Node):
        self.node = node
        self.seen = 0  #: the number of the newest batch read
        self.missing: dict[int, float] = {}  #: batch number -> when first found missing
        self.bad_counter: str | None = None  #: the unreadable counter last warned about

    @property
    def broker(self) -> Any:
        return self.node.consumer.broker

    def version(self) -> int | None:
        """The counter: the number of the newest revoke batch (None: no revoke stored)."""
        text = self.broker.get_value(REVOKE_VERSION_KEY)
        if text is None:
            return None
        try:
            return int(text)
        except (TypeError, ValueError):
            if text != self.bad_counter:  # (once, not at every heartbeat)
                self.bad_counter = text
                log.warning("%s: the revoke counter %s holds %.40r, not a number (not written "
                            "by fleet): durable revokes are not loaded until it is deleted",
                            self.node.name, REVOKE_VERSION_KEY, text)
            return None

    def load(self) -> None:
        """Read the newest batches (when the node becomes ready)."""
        version = self.version()
        self.missing.clear()
        self.seen = version or 0
        revoked = self.node.jobs.revoked
        top, added = self.seen, 0
        while top > 0 and added < revoked.maxlen:
            numbers = list(range(top, max(0, top - CHUNK), -1))
            found = self._read(numbers)
            if not found:
                break  # a whole chunk expired: so did the older ones
            added += found
            top -= CHUNK
        if added:
            log.info("%s: %d revoked task id(s) loaded from the broker", self.node.name, added)

    def refresh(self) -> None:
        """Read what was revoked since the last look (each heartbeat: usually one read)."""
        version = self.version()
        if version is None and not self.missing:
            return
        if version is not None and version < self.seen:  # the counter expired and restarted
            self.load()
            return
        now = time.monotonic()
        retry = [n for n, since in self.missing.items() if now - since < MISSING_GRACE]
        self.missing = {n: self.missing[n] for n in retry}
        newest = version or self.seen
        fresh = list(range(max(self.seen, newest - MOST_PER_REFRESH) + 1, newest + 1))
        self.seen = max(self.seen, newest)
        if fresh or retry:
            self._read(retry + fresh, track_missing=True)

    def _read(self, numbers: list[int], track_missing: bool = False) -> int:
        """Read these batches into the revoked set; how many ids they held."""
        keys = [f"{REVOKE_BATCH_PREFIX}{n}" for n in numbers]
        added, now = 0, time.monotonic()
        for start in range(0, len(keys), CHUNK):
            texts = self.broker.get_values(keys[start:start + CHUNK])
            for number, text in zip(numbers[start:start + CHUNK], texts, strict=True):
                if text is None:
                    if track_missing:
                        self.missing.setdefault(number, now)
                    continue
                self.missing.pop(number, None)
                added += self._add(number, text)
        return added

    def _add(self, number: int, text: str) -> int:
        try:
            batch = parse_json(text, BATCH_SIZE)
            ids, at, expires = batch["ids"], float(batch["at"]), float(batch["expires"])
            if not (isinstance(ids, list) and all(isinstance(i, str) and len(i) <= MAX_NAME
                                                  for i in ids) and expires >= 0 and
                    math.isfinite(at + expires)):
                raise ValueError("not a list of task ids")
        except (ValueError, TypeError, KeyError) as exc:
            log.warning("%s: skipped revoke batch %s%d: %s (not written by fleet)",
                        self.node.name, REVOKE_BATCH_PREFIX, number, exc)
            return 0
        self.node.jobs.revoked.update(ids, at + expires)
        return len(ids)
