"""`memory://NAME`: an in-process transport for fast, deterministic unit tests.

Every transport opened with the same NAME in one process shares one store (a dict of
structures behind a lock), so a producer and a consumer in the same test see each other.
It follows the contract of `base.py` exactly, but nothing crosses a process boundary (a forked
child gets a store of its own): integration tests use the real transports. With a
`ManualClock` (see `clock.py`) nothing in it depends on real time, and `join` waits until
queues are drained, so a test never sleeps.

The store, field by field:

    messages     id -> _Message(queue, priority, seq, eta, body, redelivered), for every
                 message not yet acked (ready, scheduled or reserved); `seq` numbers puts, so
                 a requeued message keeps its place ahead of newer ones
    ready        ids on their queue (due or still waiting for their eta), not reserved
    reserved     consumer id -> {message id -> started}: what each consumer holds
    queues       every queue ever put to
    consumers    consumer id -> (ConsumerInfo, last heartbeat by the clock); `reserve` adds a
                 consumer it does not know, so whatever it holds can be recovered
    values       key -> (value, expires or None); leases are values under "lease:<name>"
    dead         dead letters, newest first (at most 10,000)
    subscribers  live subscriptions, each with its own short backlog of broadcasts

Recovery: `recover(timeout)` takes every consumer whose last heartbeat is older than
`timeout` seconds off `consumers` and empties its `reserved` entry: unstarted messages go back
to `ready` marked redelivered, started ones are deleted and reported as lost.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from fleet.engine.transport.base import (
    DEAD_LETTER_QUEUE,
    Batch,
    ConsumerInfo,
    ConsumerRecord,
    DeadLetter,
    Delivery,
    Outgoing,
    QueueStats,
    Recovery,
    StoredResult,
    Subscription,
    Transport,
)
from fleet.engine.transport.clock import Clock

_BACKLOG = 1000


@dataclass
class _Message:
    id: str
    queue: str
    priority: int
    seq: int
    eta: float | None
    body: str
    redelivered: bool = False


@dataclass
class _Store:
    lock: threading.RLock = field(default_factory=threading.RLock)
    seq: itertools.count = field(default_factory=itertools.count)
    messages: dict[str, _Message] = field(default_factory=dict)
    ready: set[str] = field(default_factory=set)
    reserved: dict[str, dict[str, bool]] = field(default_factory=dict)
    queues: set[str] = field(default_factory=set)
    consumers: dict[str, tuple[ConsumerInfo, float]] = field(default_factory=dict)
    values: dict[str, tuple[str, float | None]] = field(default_factory=dict)
    dead: deque = field(default_factory=lambda: deque(maxlen=10000))
    subscribers: list[_MemorySubscription] = field(default_factory=list)
    #: Notified (under `lock`) whenever values are stored, for `wait_value`.
    stored: threading.Condition = field(init=False)
    #: Notified (under `lock`) whenever a message is gone for good (acked, dead-lettered,
    #: purged or lost), for `join`.
    settled: threading.Condition = field(init=False)

    def __post_init__(self) -> None:
        self.stored = threading.Condition(self.lock)
        self.settled = threading.Condition(self.lock)


_STORES: dict[str, _Store] = {}
_STORES_LOCK = threading.Lock()


def _store_for(url: str) -> _Store:
    name = url.split("://", 1)[1] or "default"
    with _STORES_LOCK:
        return _STORES.setdefault(f"{os.getpid()}:{name}", _Store())


class _MemorySubscription(Subscription):
    poll_interval = 0.01

    def __init__(self, store: _Store, channels: Sequence[str], wake_queues: Sequence[str]):
        self.store = store
        self.channels = set(channels)
        self.wake_queues = set(wake_queues)
        self.inbox: deque[tuple[str, str]] = deque(maxlen=_BACKLOG)
        self.woken = True

    def fileno(self) -> int | None:
        return None

    def poll(self) -> tuple[list[tuple[str, str]], bool]:
        with self.store.lock:
            items = list(self.inbox)
            self.inbox.clear()
            woken, self.woken = self.woken, False
        return items, woken

    def close(self) -> None:
        with self.store.lock:
            if self in self.store.subscribers:
                self.store.subscribers.remove(self)


class MemoryTransport(Transport):
    schemes = ("memory",)

    def __init__(self, url: str, options: dict | None = None, clock: Clock | None = None):
        super().__init__(url, options, clock)
        self.store = _store_for(url)

    def ping(self) -> None:
        return None

    def close(self) -> None:
        return None

    # -- messages ---------------------------------------------------------------------------

    def put(self, messages: Sequence[Outgoing]) -> None:
        with self.store.lock:
            for out in messages:
                self._add(out)

    def _add(self, out: Outgoing) -> None:
        store = self.store
        store.messages[out.id] = _Message(out.id, out.queue, out.priority, next(store.seq),
                                          out.eta, out.body)
        store.ready.add(out.id)
        store.queues.add(out.queue)
        for subscriber in store.subscribers:
            if out.queue in subscriber.wake_queues:
                subscriber.woken = True

    def reserve(self, consumer_id: str, queues: Sequence[str], limit: int,
                horizon: float = 0.0) -> list[Delivery]:
        if limit <= 0:
            return []
        wanted = set(queues)
        now = self.clock.time()
        due_by = now + horizon
        with self.store.lock:
            candidates = [
                msg for msg_id in self.store.ready
                if (msg := self.store.messages[msg_id]).queue in wanted
                and (msg.eta is None or msg.eta <= due_by)
            ]
            candidates.sort(key=lambda msg: (-msg.priority, msg.seq))
            held = self.store.reserved.setdefault(consumer_id, {})
            if candidates and consumer_id not in self.store.consumers:
                info = ConsumerInfo(consumer_id, consumer_id.split("#", 1)[0], list(queues),
                                    0, "")
                self.store.consumers[consumer_id] = (info, now)
            deliveries = []
            for msg in candidates[:limit]:
                self.store.ready.discard(msg.id)
                held[msg.id] = False
                deliveries.append(Delivery(msg.id, msg.queue, msg.body, msg.priority,
                                           msg.redelivered))
            return deliveries

    def commit(self, consumer_id: str, batch: Batch) -> None:
        with self.store.lock:
            self.set_values(batch.results)
            for out in batch.puts:
                self._add(out)
            held = self.store.reserved.setdefault(consumer_id, {})
            for msg_id in batch.started:
                if msg_id in held:
                    held[msg_id] = True
            for msg_id in batch.acks:
                if held.pop(msg_id, None) is not None:
                    self._delete(msg_id)
            for msg_id in batch.requeues:
                if held.pop(msg_id, None) is not None:
                    self._return(msg_id)

    def _delete(self, msg_id: str) -> None:
        """Forget a message for good (acked, dead-lettered, purged or lost); wakes `join`."""
        self.store.messages.pop(msg_id, None)
        self.store.settled.notify_all()

    def join(self, queues: Sequence[str], timeout: float = 10.0) -> None:
        """Wait until `queues` hold no message at all (ready, scheduled or reserved): all
        that was put on them was acked, dead-lettered, purged or lost. For tests that run a
        consumer in a thread; raises TimeoutError after `timeout` seconds of real time."""
        wanted = set(queues)
        deadline = time.monotonic() + timeout
        with self.store.settled:
            while any(msg.queue in wanted for msg in self.store.messages.values()):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"queues {sorted(wanted)} still hold messages after "
                                       f"{timeout}s")
                self.store.settled.wait(remaining)

    def _return(self, msg_id: str) -> None:
        msg = self.store.messages.get(msg_id)
        if msg is not None:
            msg.redelivered = True
            self.store.ready.add(msg_id)

    def purge(self, queues: Sequence[str]) -> int:
        wanted = set(queues)
        count = 0
        with self.store.lock:
            if DEAD_LETTER_QUEUE in wanted:
                count += len(self.store.dead)
                self.store.dead.clear()
            for msg_id in [m for m in self.store.ready
                           if self.store.messages[m].queue in wanted]:
                self.store.ready.discard(msg_id)
                self._delete(msg_id)
                count += 1
        return count

    def queue_stats(self) -> list[QueueStats]:
        now = self.clock.time()
        with self.store.lock:
            stats: dict[str, QueueStats] = {}
            for name in self.store.queues:
                stats[name] = QueueStats(name)
            for info, _ in self.store.consumers.values():
                for name in info.queues:
                    stats.setdefault(name, QueueStats(name)).consumers += 1
            for msg_id in self.store.ready:
                msg = self.store.messages[msg_id]
                entry = stats.setdefault(msg.queue, QueueStats(msg.queue))
                if msg.eta is not None and msg.eta > now:
                    entry.scheduled += 1
                else:
                    entry.ready += 1
            for held in self.store.reserved.values():
                for msg_id in held:
                    msg = self.store.messages.get(msg_id)
                    if msg is not None:
                        stats.setdefault(msg.queue, QueueStats(msg.queue)).reserved += 1
            if self.store.dead:
                stats[DEAD_LETTER_QUEUE] = QueueStats(DEAD_LETTER_QUEUE, ready=len(self.store.dead))
            return [stats[name] for name in sorted(stats)]

    def dead_letter(self, consumer_id: str, delivery: Delivery, reason: str) -> None:
        with self.store.lock:
            if self.store.reserved.get(consumer_id, {}).pop(delivery.id, None) is None:
                return  # not ours (any more): someone else owns it now
            self.store.dead.appendleft(DeadLetter(delivery.id, delivery.queue, delivery.body,
                                                  reason, self.clock.time()))
            self._delete(delivery.id)

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        with self.store.lock:
            return list(self.store.dead)[:limit]

    # -- consumers --------------------------------------------------------------------------

    def register(self, consumer: ConsumerInfo) -> None:
        self.heartbeat(consumer)

    def heartbeat(self, consumer: ConsumerInfo) -> None:
        with self.store.lock:
            self.store.consumers[consumer.consumer_id] = (consumer, self.clock.time())

    def unregister(self, consumer_id: str) -> None:
        with self.store.lock:
            self.store.consumers.pop(consumer_id, None)
            for msg_id in self.store.reserved.pop(consumer_id, {}):
                self._return(msg_id)

    def consumers(self) -> list[ConsumerRecord]:
        with self.store.lock:
            return [ConsumerRecord(info.consumer_id, info.node, list(info.queues), info.pid,
                                   info.host, seen, dict(info.info))
                    for info, seen in self.store.consumers.values()]

    def recover(self, timeout: float) -> Recovery:
        report = Recovery()
        cutoff = self.clock.time() - timeout
        with self.store.lock:
            for consumer_id, (_, seen) in list(self.store.consumers.items()):
                if seen >= cutoff:
                    continue
                del self.store.consumers[consumer_id]
                report.dead_consumers.append(consumer_id)
                for msg_id, started in self.store.reserved.pop(consumer_id, {}).items():
                    msg = self.store.messages.get(msg_id)
                    if msg is None:
                        continue
                    if started:
                        self._delete(msg_id)
                        report.lost.append((consumer_id, Delivery(msg.id, msg.queue, msg.body,
                                                                  msg.priority, True)))
                    else:
                        self._return(msg_id)
                        report.requeued += 1
        return report

    # -- broadcasts -------------------------------------------------------------------------

    def publish(self, channel: str, payload: str) -> None:
        with self.store.lock:
            for subscriber in self.store.subscribers:
                if channel in subscriber.channels:
                    subscriber.inbox.append((channel, payload))

    def subscribe(self, channels: Sequence[str], wake_queues: Sequence[str] = ()) -> Subscription:
        subscription = _MemorySubscription(self.store, channels, wake_queues)
        with self.store.lock:
            self.store.subscribers.append(subscription)
        return subscription

    # -- values -----------------------------------------------------------------------------

    def _live(self, key: str) -> str | None:
        item = self.store.values.get(key)
        if item is None:
            return None
        value, expires = item
        if expires is not None and expires <= self.clock.time():
            del self.store.values[key]
            return None
        return value

    def _expiry(self, ttl: float | None) -> float | None:
        return self.clock.time() + ttl if ttl else None

    def set_values(self, values: Sequence[StoredResult]) -> None:
        with self.store.lock:
            for item in values:
                self.store.values[item.key] = (item.value, self._expiry(item.ttl))
            self.store.stored.notify_all()

    def get_value(self, key: str) -> str | None:
        with self.store.lock:
            return self._live(key)

    def wait_value(self, key: str, timeout: float, previous: str | None = None) -> str | None:
        """Waits on the store's condition: woken by every `set_values`/`commit`."""
        deadline = time.monotonic() + max(0.0, timeout)
        with self.store.lock:
            while True:
                value = self._live(key)
                remaining = deadline - time.monotonic()
                if value != previous or remaining <= 0:
                    return value
                self.store.stored.wait(remaining)

    def delete_values(self, keys: Sequence[str]) -> None:
        with self.store.lock:
            for key in keys:
                self.store.values.pop(key, None)

    def add_value(self, key: str, value: str, ttl: float | None = None) -> bool:
        with self.store.lock:
            if self._live(key) is not None:
                return False
            self.store.values[key] = (value, self._expiry(ttl))
            return True

    def values_with_prefix(self, prefix: str) -> dict[str, str]:
        with self.store.lock:
            keys = [key for key in self.store.values if key.startswith(prefix)]
            return {key: value for key in keys if (value := self._live(key)) is not None}

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        with self.store.lock:
            value = int(self._live(key) or 0) + amount
            expiry = self._expiry(ttl) if ttl else (self.store.values.get(key) or (0, None))[1]
            self.store.values[key] = (str(value), expiry)
            return value

    def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        key = f"lease:{name}"
        with self.store.lock:
            holder = self._live(key)
            if holder is not None and holder != owner:
                return False
            self.store.values[key] = (owner, self._expiry(ttl))
            return True

    def release_lease(self, name: str, owner: str) -> None:
        key = f"lease:{name}"
        with self.store.lock:
            if self._live(key) == owner:
                del self.store.values[key]
