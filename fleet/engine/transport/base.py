"""The transport contract: what every broker (sqlite, redis, memory) provides.

A transport is a small set of primitives over one store. It knows nothing about tasks: it
moves opaque message bodies (JSON text) between queues and consumers, and keeps small values
(results, counters, leases) with expiry. Each implementation documents its layout, and how a
reservation is recovered, at the top of its module.

The contract is a few small protocols, grouped by who calls them; every transport implements
all of them, and `Transport` is their union (what `open_transport` returns):

    Connection   ping, close, describe, cleanup         open, check and close the store
    Queues       put, reserve, commit, submit, ack,     the message flow: a producer puts, a
                 requeue, mark_started, dead_letter     node reserves and settles (hot path)
    QueueAdmin   purge, queue_stats, dead_letters       what operators read and clear
    Liveness     register, heartbeat, unregister,       consumer liveness, which redelivery
                 consumers, recover                     follows (not message age)
    Broadcasts   publish, subscribe                     remote control, events, wake-ups
    Values       set_values, get_value(s), wait_value,  results, counters, leases: small
                 delete_values, add_value, incr,        values with expiry
                 values_with_prefix, acquire_lease,
                 release_lease

Code that needs one job can ask for just that protocol (a result store needs `Values`);
they are runtime-checkable, so `isinstance(store, Values)` works for any object with those
methods (a test's fake included).

Delivery semantics (the same for every transport)
--------------------------------------------------
* `put` adds a message to a queue. A message with an `eta` in the future is *scheduled*: it
  cannot be reserved until `eta - horizon` (see `reserve`).
* `reserve` hands up to `limit` messages to one consumer. They are **reserved**, not deleted:
  they belong to that consumer until it `ack`s them (done: deleted) or `requeue`s them (back on
  their queue at their original position, before anything put later).
* A consumer proves it is alive with `heartbeat`. `recover` (run periodically by every node)
  finds consumers whose last heartbeat is older than a timeout and returns their reservations
  to their queues. So a long task or a far ETA is never delivered twice while its node lives,
  and nothing is lost when a node is SIGKILLed.
* `mark_started` records that an early-acked task began running: if its consumer dies, the
  message is *not* requeued (the task may have had side effects) but reported by `recover` as
  lost, so the caller can mark it failed. Messages never marked started (acks-late tasks, or
  prefetched ones) are requeued.
* Ordering: higher `priority` (0-9) first, then first in, first out within a priority.
  Callers clamp priorities to 0-9 (`clamp_priority`); a transport may clamp again.
* A requeued message keeps its eta: it is due again only at `eta - horizon`.
* Acks, started marks, requeues and dead-lettering only touch messages the consumer still
  holds: a late ack from a consumer that was declared dead never deletes a message that was
  requeued and reserved by someone else.
* `reserve` registers a consumer it does not know (with what it knows), so whatever it holds
  can always be recovered. Consumers still `register` first to publish their details.
* `commit` applies a batch of acks, started marks, results and new messages in as few round
  trips as the store allows (one pipeline / one transaction). It is the worker's hot path.
* `wait_value` lets a client wait for a value (a task's result) to be stored, by `commit` or
  `set_values`, without polling where the store can notify (Redis); others poll briefly.
* `submit` does a commit and a reserve together without waiting: it returns a `Pending` the
  node's loop waits on with its other descriptors, so the node keeps feeding its children
  during a network round trip. Transports without a socket do the work at once.

Consumers are identified by a `consumer_id` that is unique per node *process start*
(`w1@host#3f2a9c`), so a node restarted under the same name never inherits, and so never
strands, the reservations of its dead predecessor.

Processes and threads
---------------------
A transport object may be shared by threads of one process but never across `fork()`:
implementations check `os.getpid()` and reconnect in a forked child.

Time
----
Time is wall-clock seconds since the epoch, as floats, read from the transport's `clock`
(`clock.py`): real time by default (on Redis the server's, so skewed hosts agree), or a test's
`ManualClock`, which every heartbeat, recovery, lease and eta judgement then follows, and
value expiry too except on Redis (the server expires its keys on its own clock). Waiting
(the `wait_value` timeout) is always real time.
"""

from __future__ import annotations

import abc
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from fleet.engine.transport.clock import SYSTEM_CLOCK, Clock

#: Priorities are clamped to this range; higher runs first.
MIN_PRIORITY = 0
MAX_PRIORITY = 9

#: Longest pause between two reads of the default (polling) `Transport.wait_value`.
WAIT_POLL_MAX = 0.005

#: Name of the queue that undecodable and unknown-task messages are moved to.
DEAD_LETTER_QUEUE = "fleet.dead"


def clamp_priority(priority: int | None) -> int:
    if priority is None:
        return MIN_PRIORITY
    return max(MIN_PRIORITY, min(MAX_PRIORITY, int(priority)))


def queues_from_json(text: object) -> list[str]:
    """The queue names in a consumer's stored JSON list; none from anything else (a
    transport reads what other processes wrote: it never fails on it)."""
    import json

    try:
        queues = json.loads(text) if isinstance(text, str | bytes) else None
    except (ValueError, RecursionError):
        return []
    if not isinstance(queues, list):
        return []
    return [queue for queue in queues if isinstance(queue, str)]


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to put on a queue."""

    id: str
    queue: str
    body: str
    priority: int = 0
    eta: float | None = None


@dataclass(slots=True)
class Delivery:
    """A reserved message, as handed to a consumer."""

    id: str
    queue: str
    body: str
    priority: int = 0
    #: True when this message was reserved before and went back to its queue (requeue or
    #: recovery from a dead consumer). Lets the worker count redeliveries.
    redelivered: bool = False


@dataclass(frozen=True, slots=True)
class StoredResult:
    """A result (or any small JSON value) to keep under `key` for `ttl` seconds."""

    key: str
    value: str
    ttl: float | None = None


@dataclass(slots=True)
class Batch:
    """Work the worker's main loop accumulated during one iteration, applied by `commit`.

    Applied in this order: `results`, `puts`, `started`, `acks`, `requeues`, so a result is
    stored before its message is acked (a crash in between runs an acks-late task again
    rather than losing its result).
    """

    results: list[StoredResult] = field(default_factory=list)
    puts: list[Outgoing] = field(default_factory=list)
    started: list[str] = field(default_factory=list)
    acks: list[str] = field(default_factory=list)
    requeues: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.results or self.puts or self.started or self.acks or self.requeues)


@dataclass(slots=True)
class ConsumerInfo:
    """What a consumer says about itself when it registers and on every heartbeat."""

    consumer_id: str
    node: str
    queues: list[str]
    pid: int
    host: str
    #: Free-form JSON-able details (active count, processed count, load, ...).
    info: dict = field(default_factory=dict)


@dataclass(slots=True)
class ConsumerRecord:
    """A registered consumer as seen by anybody (see `consumers`)."""

    consumer_id: str
    node: str
    queues: list[str]
    pid: int
    host: str
    last_heartbeat: float
    info: dict = field(default_factory=dict)


@dataclass(slots=True)
class Recovery:
    """What `recover` did: consumers declared dead, messages requeued, messages lost."""

    dead_consumers: list[str] = field(default_factory=list)
    requeued: int = 0
    #: Early-acked messages that were running on a dead consumer: (consumer_id, Delivery).
    lost: list[tuple[str, Delivery]] = field(default_factory=list)


@dataclass(slots=True)
class QueueStats:
    name: str
    ready: int = 0  #: waiting to be reserved (due now)
    scheduled: int = 0  #: waiting for their ETA, still in the broker
    reserved: int = 0  #: held by consumers (prefetched, running, or held for their ETA)
    consumers: int = 0  #: registered consumers of this queue (until recovered)


@dataclass(slots=True)
class DeadLetter:
    id: str
    queue: str
    body: str
    reason: str
    at: float


@dataclass(frozen=True, slots=True)
class ReserveRequest:
    """What `submit` should reserve after applying its batch (see `Transport.reserve`)."""

    queues: Sequence[str]
    limit: int
    horizon: float = 0.0


class Pending(abc.ABC):
    """A `submit` under way. Wait until `fileno()` is readable (None: done already), then
    call `result()` once: the reserved deliveries, or the exception the work raised."""

    @abc.abstractmethod
    def fileno(self) -> int | None: ...

    @abc.abstractmethod
    def result(self) -> list[Delivery]: ...


class Done(Pending):
    """A `Pending` whose work is already done (or failed)."""

    def __init__(self, deliveries: list[Delivery] | None = None,
                 error: BaseException | None = None):
        self.deliveries = deliveries or []
        self.error = error

    def fileno(self) -> int | None:
        return None

    def result(self) -> list[Delivery]:
        if self.error is not None:
            raise self.error
        return self.deliveries


class Subscription(abc.ABC):
    """A consumer's view of broadcasts and new-message wakeups.

    Call `poll()` when `fileno()` is readable, or every `poll_interval` seconds when
    `fileno()` is None (transports without a socket to wait on).
    """

    #: Seconds between polls when there is no file descriptor to wait on.
    poll_interval: float = 0.05

    @abc.abstractmethod
    def fileno(self) -> int | None:
        """A descriptor that becomes readable when `poll()` has something, or None."""

    @abc.abstractmethod
    def poll(self) -> tuple[list[tuple[str, str]], bool]:
        """Return (broadcasts, woken) without blocking.

        `broadcasts` is every (channel, payload) published on a subscribed channel since the
        last poll. `woken` is True when a subscribed queue may have new messages (or when the
        transport cannot tell), meaning: worth calling `reserve`.
        """

    @abc.abstractmethod
    def close(self) -> None: ...


@runtime_checkable
class Connection(Protocol):
    """Opening, checking and closing the store; the same for every kind of caller."""

    #: The URL the transport was opened with, and its options (`broker_transport_options`).
    url: str
    options: dict
    #: Where the transport reads the time (see `clock.py`).
    clock: Clock
    #: URL scheme(s) this transport serves, e.g. ("sqlite",).
    schemes: tuple[str, ...] = ()
    #: Exceptions that mean "the store is unreachable or busy right now": the worker backs off
    #: and tries again instead of crashing.
    transient_errors: tuple[type[BaseException], ...] = ()
    #: Exceptions that mean "the store answered, but about data fleet cannot use" (an entry
    #: something else wrote: a Redis WRONGTYPE, a failing script, a bad SQLite row): never
    #: reported as the store being unreachable; the worker logs it and carries on.
    data_errors: tuple[type[BaseException], ...] = ()

    @abc.abstractmethod
    def ping(self) -> None:
        """Check the store is reachable; raise `fleet.exceptions.BrokerUnavailable` if not."""

    @abc.abstractmethod
    def close(self) -> None: ...

    def cleanup(self) -> None:
        """Delete expired values and old broadcasts (called now and then by nodes); most
        stores expire by themselves, so the default does nothing."""

    def describe(self) -> str:
        """The URL with any password masked, for banners, logs and reports."""
        from fleet.engine.transport import mask_url  # the package imports this module

        return mask_url(self.url)


@runtime_checkable
class Queues(Protocol):
    """The message flow: producers put; a node reserves, settles and dead-letters."""

    @abc.abstractmethod
    def put(self, messages: Sequence[Outgoing]) -> None:
        """Add messages to their queues (one round trip for the whole sequence)."""

    @abc.abstractmethod
    def reserve(self, consumer_id: str, queues: Sequence[str], limit: int,
                horizon: float = 0.0) -> list[Delivery]:
        """Reserve up to `limit` messages from `queues` for `consumer_id`.

        Returns messages that are due (no eta, or eta <= now + horizon), highest priority
        first, then oldest first, across all the given queues. Returns [] at once when
        nothing is due: this never blocks (wait on a `Subscription` instead).
        """

    @abc.abstractmethod
    def commit(self, consumer_id: str, batch: Batch) -> None:
        """Apply a batch (results, puts, started marks, acks, requeues) in one go."""

    def submit(self, consumer_id: str, batch: Batch,
               reserve: ReserveRequest | None = None) -> Pending:
        """Apply `batch`, then reserve as `reserve` asks, without waiting for the store.

        The default does both now and returns a `Done`; network transports override it to
        send both in one round trip and return at once. Errors surface from `result()`.
        """
        try:
            self.commit(consumer_id, batch)
            deliveries = (self.reserve(consumer_id, reserve.queues, reserve.limit,
                                       reserve.horizon) if reserve else [])
        except Exception as exc:
            return Done(error=exc)
        return Done(deliveries)

    def ack(self, consumer_id: str, ids: Iterable[str]) -> None:
        self.commit(consumer_id, Batch(acks=list(ids)))

    def requeue(self, consumer_id: str, ids: Iterable[str]) -> None:
        """Return reserved messages to their queues, ahead of anything put since."""
        self.commit(consumer_id, Batch(requeues=list(ids)))

    def mark_started(self, consumer_id: str, ids: Iterable[str]) -> None:
        self.commit(consumer_id, Batch(started=list(ids)))

    @abc.abstractmethod
    def dead_letter(self, consumer_id: str, delivery: Delivery, reason: str) -> None:
        """Move a reserved message to the dead-letter store with the reason (and ack it)."""


@runtime_checkable
class QueueAdmin(Protocol):
    """What operators read and clear (`fleet queues`, `fleet purge`, `inspect`)."""

    @abc.abstractmethod
    def purge(self, queues: Sequence[str]) -> int:
        """Delete every ready and scheduled message of `queues`; return how many.

        Reserved messages (held by live consumers) are not touched.
        """

    @abc.abstractmethod
    def queue_stats(self) -> list[QueueStats]:
        """Every known queue (ever put to, or consumed by a registered consumer), sorted by
        name. `consumers` and `reserved` count registered consumers until they are
        recovered, alive or not."""

    @abc.abstractmethod
    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        """The most recent dead letters, newest first."""


@runtime_checkable
class Liveness(Protocol):
    """Consumers prove they are alive; a silent consumer's reservations are recovered."""

    @abc.abstractmethod
    def register(self, consumer: ConsumerInfo) -> None:
        """Announce a consumer (counts as its first heartbeat)."""

    @abc.abstractmethod
    def heartbeat(self, consumer: ConsumerInfo) -> None:
        """Refresh the consumer's liveness and its `info`."""

    @abc.abstractmethod
    def unregister(self, consumer_id: str) -> None:
        """A clean exit: forget the consumer. Any reservation it still holds is requeued,
        started or not (the caller settles its running tasks before unregistering)."""

    @abc.abstractmethod
    def consumers(self) -> list[ConsumerRecord]:
        """Every registered consumer with its last heartbeat (alive or not yet recovered)."""

    @abc.abstractmethod
    def recover(self, timeout: float) -> Recovery:
        """Declare consumers silent for more than `timeout` seconds dead and recover them.

        Their unstarted reservations go back to their queues; early-acked messages they were
        running are removed and returned in `Recovery.lost`. Safe to run concurrently from
        many nodes: each dead consumer is recovered exactly once.
        """


@runtime_checkable
class Broadcasts(Protocol):
    """Fire-and-forget broadcasts (the mailbox of remote control, events) and wake-ups."""

    @abc.abstractmethod
    def publish(self, channel: str, payload: str) -> None:
        """Broadcast `payload` to every current subscriber of `channel` (fire and forget).

        Nobody listening means the payload is dropped; a transport keeps at most a short
        backlog, so broadcasts never fill the store.
        """

    @abc.abstractmethod
    def subscribe(self, channels: Sequence[str], wake_queues: Sequence[str] = ()) -> Subscription:
        """Listen to `channels`, and be woken when messages arrive on `wake_queues`."""


@runtime_checkable
class Values(Protocol):
    """Small values with expiry: results, counters and leases."""

    @abc.abstractmethod
    def set_values(self, values: Sequence[StoredResult]) -> None:
        """Store values under their keys with their expiry (overwrites)."""

    @abc.abstractmethod
    def get_value(self, key: str) -> str | None:
        """The stored value, or None if missing or expired."""

    def get_values(self, keys: Sequence[str]) -> list[str | None]:
        return [self.get_value(key) for key in keys]

    def wait_value(self, key: str, timeout: float, previous: str | None = None) -> str | None:
        """The value under `key` once it differs from `previous` (None: missing), waiting
        at most `timeout` seconds for `commit` or `set_values` to store one; at the timeout,
        whatever is stored then.

        Waits of several clients on one key all end; a transport that notifies may wake only
        one of them per store, so callers wait in slices (a fraction of a second) and look
        again. This default polls, quickly at first (from 0.5 ms, doubling up to
        WAIT_POLL_MAX), so a result stored soon after the call is seen soon. The timeout is
        real time, whatever the transport's clock.
        """
        deadline = time.monotonic() + max(0.0, timeout)
        pause = 0.0005
        while True:
            value = self.get_value(key)
            remaining = deadline - time.monotonic()
            if value != previous or remaining <= 0:
                return value
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, WAIT_POLL_MAX)

    @abc.abstractmethod
    def delete_values(self, keys: Sequence[str]) -> None: ...

    @abc.abstractmethod
    def add_value(self, key: str, value: str, ttl: float | None = None) -> bool:
        """Store `value` only if `key` holds nothing; True if stored."""

    @abc.abstractmethod
    def values_with_prefix(self, prefix: str) -> dict[str, str]:
        """Every unexpired key starting with `prefix` and its value (for small key sets)."""

    @abc.abstractmethod
    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """Atomically add `amount` to an integer counter (missing = 0); return the new value.

        A given `ttl` restarts the expiry; without one, the existing expiry is kept."""

    @abc.abstractmethod
    def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        """Take or renew the lease `name` for `owner` for `ttl` seconds (by the clock).

        True if `owner` holds the lease afterwards (it was free, expired, or already theirs).
        """

    @abc.abstractmethod
    def release_lease(self, name: str, owner: str) -> None:
        """Give the lease up, only if `owner` still holds it."""


class Transport(Connection, Queues, QueueAdmin, Liveness, Broadcasts, Values):
    """One store (broker and/or result backend): every protocol of the contract.

    `clock` is where it reads the time (default: real time); see `clock.py`.
    """

    def __init__(self, url: str, options: dict | None = None, clock: Clock | None = None):
        self.url = url
        self.options = dict(options or {})
        self.clock = SYSTEM_CLOCK if clock is None else clock
