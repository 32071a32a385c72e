"""The node's only user of the broker (and of the result store): nothing else in the main
process sends it a command.

Every loop turn may make one round trip (`exchange`): the commit of what the turn produced
(results, acks, retries, follow-ups, in one `Batch`) together with a reserve of more
messages when the dispatch buffer runs low. The round trip is sent and its reply read when
it arrives (`on_pending`), so the loop keeps feeding children meanwhile. Commits are batched
across turns while tasks keep finishing: a batch is written once it holds FLUSH_SIZE
operations or is FLUSH_DELAY seconds old, and at once when the node has nothing running.

It also registers the node and heartbeats for it (what the node reports: `heartbeat_info`),
listens on the subscription (broadcasts, and wakeups when messages arrive), recovers the
messages of dead nodes, and moves messages the node cannot run to the dead-letter queue.
A broker error is never fatal: the work is kept and retried with backoff (`trouble`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import time
import uuid
from typing import TYPE_CHECKING, Any

from fleet import __version__
from fleet.engine import message as codec
from fleet.engine import states
from fleet.engine.node.jobs import RUNNING
from fleet.engine.results import exception_meta
from fleet.engine.transport.base import Batch, ConsumerInfo, Delivery, ReserveRequest
from fleet.exceptions import (
    BrokerDataError,
    BrokerUnavailable,
    MessageDecodeError,
    WorkerLostError,
)
from fleet.nodenames import gethostname
from fleet.operator_errors import is_broker_data_error

if TYPE_CHECKING:
    from fleet.engine.app import Fleet
    from fleet.engine.transport.base import Pending
    from fleet.engine.worker import Node
    from fleet.signals import SignalRecorder

log = logging.getLogger("fleet.worker")

#: Commit when the batch holds this many operations, or is this old (seconds).
FLUSH_SIZE = 64
FLUSH_DELAY = 0.002
CLEANUP_INTERVAL = 60.0


class Consumer:
    """The broker as the node sees it: one round trip at a time, retried with backoff."""

    def __init__(self, node: Node):
        self.node = node
        self.conf = node.conf
        self.id = f"{node.name}#{uuid.uuid4().hex[:10]}"
        self.queues = list(dict.fromkeys(node.options.queues))
        #: Broadcast channels to listen to (remote control adds its own before start).
        self.channels: list[str] = []
        self.broker: Any = None
        self.result_store: Any = None
        self.backend: Any = None
        self.subscription: Any = None
        self.batch = Batch()  #: what the next commit writes
        self.batch_since: float | None = None
        self.next_heartbeat = 0.0
        self.failures = 0  #: broker errors in a row
        self.retry_at = 0.0
        self.want_fetch = True
        self.last_fetch = 0.0
        self.fetched_at = time.monotonic()  #: when the last reserve round trip came back
        #: New-message wakeups seen, and how many when the round trip under way was sent.
        self._wakes = self._pending_wakes = 0
        self._next_subscription_poll = 0.0
        self._next_cleanup = 0.0
        self._pending: Pending | None = None
        self._pending_batch: Batch | None = None
        self._pending_wanted = 0
        self._pending_fd: int | None = None

    # -- connecting --------------------------------------------------------------------------

    def connect(self, signals: SignalRecorder) -> None:
        """Reach the broker (retrying), register, subscribe, and recover dead nodes' work."""
        app = self.node.app
        self.broker = connect_with_retry(app, signals)
        self.backend = app.backend
        self.result_store = app.result_store
        self.broker.register(self.consumer_info())
        self.subscription = self.broker.subscribe(self.channels, self.queues)
        self._watch_subscription()
        try:
            self.recover_dead_nodes()
        except self.errors() as exc:  # never a reason not to start: retried every heartbeat
            self.trouble("recovering dead nodes", exc, side_work=True)

    def close(self) -> None:
        """Commit what is left, unregister, unsubscribe (the node is exiting)."""
        self.flush(final=True)
        try:
            self.broker.unregister(self.id)
        except Exception as exc:
            log.warning("Could not unregister from the broker: %s", exc)
        if self.subscription is not None:
            self.subscription.close()

    def errors(self) -> tuple[type[BaseException], ...]:
        """The broker errors the node rides out: those that retrying later may cure, and
        data errors (the broker answered about an entry fleet cannot use)."""
        broker = self.broker
        return (*broker.transient_errors, *broker.data_errors, BrokerUnavailable,
                BrokerDataError)

    def trouble(self, action: str, exc: BaseException, side_work: bool = False) -> None:
        """A broker error during `action`: back off before the next round trip. A data
        error is logged as such, never as the broker being unreachable; during `side_work`
        (heartbeat, recovery, hooks) it delays nothing: a bad entry there must not slow the
        node's round trips (the broker answers; only that entry is bad)."""
        text = " ".join(str(exc).split())[:500]
        data = isinstance(exc, BrokerDataError) or is_broker_data_error(exc)
        if data and side_work:
            log.error("Broker data error during %s (%s: %s): the broker is reachable but "
                      "holds an entry fleet cannot use", action, type(exc).__name__, text)
            return
        self.failures += 1
        delay = min(self.conf.broker_connection_retry_max_delay,
                    self.conf.broker_connection_retry_delay * 2 ** (min(self.failures, 32) - 1))
        self.retry_at = time.monotonic() + delay
        if data:
            log.error("Broker data error during %s (%s: %s): the broker is reachable but "
                      "holds an entry fleet cannot use; retrying in %.1fs", action,
                      type(exc).__name__, text, delay)
            return
        log.error("Broker error during %s (%s: %s); retrying in %.1fs", action,
                  type(exc).__name__, text, delay)

    def _ok(self) -> None:
        if self.failures:
            log.warning("Broker reachable again after %d failed attempt(s)", self.failures)
            self.failures = 0
            self.retry_at = 0.0

    # -- the round trip ----------------------------------------------------------------------

    def poll_interval(self) -> float:
        return self.subscription.poll_interval if self.subscription else 1.0

    def exchange(self, now: float) -> None:
        """Send this turn's batch and ask for more messages in one round trip, unless one is
        under way already; its reply is read when it arrives (`on_pending`)."""
        if self._pending is not None or now < self.retry_at:
            return
        reserve = self._reserve_request(now)
        if reserve is None and not self._should_flush(now):
            return
        batch, self.batch, self.batch_since = self.batch, Batch(), None
        if not self._store_results_elsewhere(batch):
            return
        if reserve is not None:
            self.last_fetch = now
        self._pending = self.broker.submit(self.id, batch, reserve)
        self._pending_batch = batch
        self._pending_wanted = reserve.limit if reserve else 0
        self._pending_wakes = self._wakes
        fd = self._pending.fileno()
        if fd is None:
            self.on_pending()
        else:
            self.node.selector.register(fd, selectors.EVENT_READ, self.on_pending)
            self._pending_fd = fd

    def _reserve_request(self, now: float) -> ReserveRequest | None:
        node = self.node
        if node.state != RUNNING or not node.ready:
            return None
        if not self.want_fetch and now - self.last_fetch < self.poll_interval():
            return None
        wanted = node.dispatcher.wanted(now)
        if not wanted:
            return None
        return ReserveRequest(self.queues, wanted, self.conf.worker_eta_horizon)

    def _should_flush(self, now: float) -> bool:
        batch = self.batch
        if not batch:
            return False
        if self.batch_since is None:
            self.batch_since = now
        size = len(batch.results) + len(batch.puts) + len(batch.acks) + len(batch.started) + \
            len(batch.requeues)
        return size >= FLUSH_SIZE or now - self.batch_since >= FLUSH_DELAY or \
            not self.node.jobs.active or self.node.state != RUNNING

    def on_pending(self) -> None:
        """The round trip's reply: the commit is done, the reserved messages are received."""
        pending, batch, wanted = self._pending, self._pending_batch, self._pending_wanted
        if self._pending_fd is not None:
            self.node.selector.unregister(self._pending_fd)
            self._pending_fd = None
        self._pending = self._pending_batch = None
        try:
            deliveries = pending.result()
        except self.errors() as exc:
            self.trouble("commit/reserve", exc)
            self._restore(batch)
            return
        self._ok()
        self.node.emit("committed", batch)
        if wanted:  # fetch again at once if it came back full or a wakeup came meanwhile
            self.want_fetch = len(deliveries) == wanted or self._wakes != self._pending_wakes
            self.fetched_at = time.monotonic()
        if self.node.state != RUNNING:  # reserved while we began shutting down: give back
            self.batch.requeues += [delivery.id for delivery in deliveries]
            return
        receive = self.node.dispatcher.receive
        for delivery in deliveries:
            receive(delivery)

    def wait_pending(self) -> None:
        """Finish the round trip under way (before anything that must come after it)."""
        if self._pending is not None:
            self.on_pending()

    def flush(self, final: bool = False) -> None:
        """Commit now, synchronously (after any round trip under way)."""
        self.wait_pending()
        if not self.batch or (not final and time.monotonic() < self.retry_at):
            return
        batch, self.batch = self.batch, Batch()
        self.batch_since = None
        if not self._store_results_elsewhere(batch):
            return
        try:
            self.broker.commit(self.id, batch)
        except self.errors() as exc:
            self.trouble("commit", exc)
            self._restore(batch)  # keep the work for the next attempt, in order
            return
        self._ok()
        self.node.emit("committed", batch)

    def _store_results_elsewhere(self, batch: Batch) -> bool:
        """With a separate result backend, write the batch's results there first (before
        their acks reach the broker); False (batch kept for later) if that store fails."""
        if self.result_store is self.broker or not batch.results:
            return True
        try:
            self.result_store.set_values(batch.results)
        except (*self.result_store.transient_errors, BrokerUnavailable) as exc:
            self.trouble("storing results", exc)
            self._restore(batch)
            return False
        batch.results = []
        return True

    def _restore(self, batch: Batch) -> None:
        """Put a batch that failed back in front of the current one, in order."""
        for name in ("results", "puts", "started", "acks", "requeues"):
            getattr(batch, name).extend(getattr(self.batch, name))
        self.batch = batch

    def store_meta(self, meta: dict) -> None:
        """Write a result the node decided itself with the next commit."""
        self.batch.results.append(self.backend.stored(meta))

    def dead_letter(self, delivery: Delivery, reason: str) -> None:
        """Move a message the node cannot run to the dead-letter queue, with the reason.

        The one way out for a delivery the node will not run (undecodable, unknown task, or
        anything failing while it is handled): one bad message costs only itself. Never
        raises; if the broker fails, the message goes back to its queue (with backoff)."""
        reason = " ".join(str(reason).split())[:2000]
        log.error("Moved message %.300r from queue %.300r to the dead-letter queue: %s. Its "
                  "body starts with: %.200r", delivery.id, delivery.queue, reason,
                  delivery.body)
        self.flush()  # the dead letter must not overtake earlier acks
        self.node.emit("rejected", delivery, reason)
        try:
            self.broker.dead_letter(self.id, delivery, reason)
        except self.errors() as exc:
            self.trouble("dead-letter", exc)
            self.batch.requeues.append(delivery.id)

    def deadlines(self, now: float) -> list[float]:
        """When the consumer wants the loop back: heartbeat, polling, fetching, flushing."""
        deadlines = [self.next_heartbeat]
        if self.subscription is not None and self.subscription.fileno() is None:
            deadlines.append(self._next_subscription_poll)
        if self._pending is None:  # else its reply wakes us
            node = self.node
            # Only while the node would reserve: with every child busy on a long task it
            # wants nothing until a child finishes (which wakes the loop), and a fetch
            # deadline left in the past would make the loop spin (issue 13).
            # Nor before the backoff after a broker error ends (`exchange` waits for it).
            if node.state == RUNNING and node.ready and node.dispatcher.wanted(now):
                deadlines.append(max(self.last_fetch + self.poll_interval(), self.retry_at))
            if self.batch_since is not None:
                deadlines.append(max(self.batch_since + FLUSH_DELAY, self.retry_at))
        return deadlines

    # -- the subscription --------------------------------------------------------------------

    def _watch_subscription(self) -> None:
        fd = self.subscription.fileno()
        if fd is not None:
            self.node.selector.register(fd, selectors.EVENT_READ, self._on_subscription)

    def poll_subscription(self, now: float) -> None:
        """Transports without a descriptor (SQLite) are polled, busy or not, so remote
        control answers within a poll interval even while every child is busy."""
        if now >= self._next_subscription_poll and self.subscription is not None and \
                self.subscription.fileno() is None:
            self._next_subscription_poll = now + self.poll_interval()
            self._on_subscription()

    def _on_subscription(self) -> None:
        try:
            broadcasts, woken = self.subscription.poll()
        except self.errors() as exc:
            self.trouble("subscription", exc)
            self._resubscribe()
            return
        if woken:
            self.want_fetch = True
            self._wakes += 1
        for channel, payload in broadcasts:
            self.node.emit("broadcast", channel, payload)

    def _resubscribe(self) -> None:
        fd = self.subscription.fileno()
        if fd is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.node.selector.unregister(fd)
        with contextlib.suppress(Exception):  # the connection is already broken
            self.subscription.close()
        try:
            self.subscription = self.broker.subscribe(self.channels, self.queues)
        except self.errors():
            return
        self._watch_subscription()

    def set_queues(self, queues: list[str]) -> None:
        """Consume from `queues` from now on (remote add_consumer/cancel_consumer)."""
        self.queues = list(dict.fromkeys(queues))
        self.want_fetch = True
        self._resubscribe()  # wakeups for the new queues

    # -- heartbeats and recovery -------------------------------------------------------------

    def consumer_info(self) -> ConsumerInfo:
        return ConsumerInfo(self.id, self.node.name, self.queues, os.getpid(), gethostname(),
                            self.heartbeat_info())

    def heartbeat_info(self) -> dict[str, Any]:
        """What the node reports with each heartbeat (and in its worker events)."""
        node = self.node
        return {"active": len(node.jobs.active), "processed": sum(node.jobs.processed.values()),
                "concurrency": node.options.concurrency, "state": node.state,
                "loadavg": list(os.getloadavg()), "started": node.started_at,
                "version": __version__, "freq": self.conf.worker_heartbeat_interval,
                **self.consuming_info()}

    def consuming_info(self) -> dict[str, Any]:
        """What `fleet worker --check` needs to tell a node that is alive but not consuming:
        whether it is ready, how many children are up, broker trouble, and, while it waits
        for work (an idle child, nothing prefetched), how long ago a reserve came back."""
        node = self.node
        pool = node.children.pool
        children = pool.children.values() if pool else ()
        hungry = node.state == RUNNING and node.ready and not node.jobs.buffer and \
            any(child.idle for child in children)
        return {"ready": node.ready, "children_up": sum(1 for c in children if c.up),
                "broker_failures": self.failures, "hungry": hungry,
                "fetch_age": round(time.monotonic() - self.fetched_at, 3),
                "heartbeat_interval": self.conf.worker_heartbeat_interval}

    def heartbeat(self, now: float) -> None:
        """Tell the broker the node lives (and the "heartbeat" hooks), recover the work of
        dead nodes, and now and then clean expired values up."""
        self.next_heartbeat = now + self.conf.worker_heartbeat_interval
        try:
            self.node.emit("heartbeat")
            self.broker.heartbeat(self.consumer_info())
            self.recover_dead_nodes()
            if now >= self._next_cleanup:
                self._next_cleanup = now + CLEANUP_INTERVAL
                self.broker.cleanup()
                if self.node.app.result_store is not self.broker:
                    self.node.app.result_store.cleanup()
        except self.errors() as exc:
            self.trouble("heartbeat", exc, side_work=True)

    def recover_dead_nodes(self) -> None:
        report = self.broker.recover(self.conf.worker_heartbeat_timeout)
        for consumer_id in report.dead_consumers:
            log.warning("Node %s stopped sending heartbeats: recovered its messages "
                        "(%d returned to their queues)", consumer_id, report.requeued)
        for consumer_id, delivery in report.lost:
            self._report_lost(consumer_id, delivery)

    def _report_lost(self, consumer_id: str, delivery: Delivery) -> None:
        """An early-acked task that was running on a dead node: failed, never run twice."""
        try:
            msg = codec.decode(delivery.body, self.conf.worker_max_message_size)
        except MessageDecodeError as exc:
            log.error("Message %.300r was running on %s when it died, and cannot be decoded "
                      "(%s): nothing to mark failed", delivery.id, consumer_id, exc.one_line())
            return
        node = consumer_id.split("#", maxsplit=1)[0]
        log.error("Task %s[%s] was running on %s when it died: marked failed", msg.task, msg.id,
                  consumer_id)
        exc = WorkerLostError(f"worker lost: node {node} died while the task ran")
        meta = exception_meta(msg.id, states.FAILURE, exc, None, task=msg.task, node=node)
        self.store_meta(meta)
        self.node.emit("lost", msg, meta)


def connect_with_retry(app: Fleet, signals: SignalRecorder | None = None) -> Any:
    """Open the broker, retrying with backoff while logging; give up with BrokerUnavailable.

    A TERM/INT/QUIT during the wait stops retrying at once (never stuck in a backoff sleep).
    """
    conf = app.conf
    attempts = conf.broker_connection_max_retries + 1
    delay = conf.broker_connection_retry_delay
    for attempt in range(1, attempts + 1):
        try:
            broker = app.broker
            broker.ping()
            if app.result_store is not broker:
                app.result_store.ping()
            return broker
        except BrokerUnavailable as exc:
            if attempt == attempts:
                raise BrokerUnavailable(
                    f"cannot reach the broker after {attempts} attempt(s): {exc.message}",
                    "check that it is running and that the URL (-b / broker_url) is right",
                ) from None
            log.error("Cannot reach the broker (%s); retrying in %.1fs (attempt %d of %d)",
                      exc.message, delay, attempt, attempts)
            if _interrupted_during(delay, signals):
                raise BrokerUnavailable("stopped while waiting for the broker") from None
            delay = min(delay * 2, conf.broker_connection_retry_max_delay)
    raise AssertionError("unreachable")


def _interrupted_during(delay: float, signals: SignalRecorder | None) -> bool:
    if signals is None:
        time.sleep(delay)
        return False
    with selectors.DefaultSelector() as waiter:
        waiter.register(signals, selectors.EVENT_READ)
        if not waiter.select(delay):
            return False
    return any(s in (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT) for s in signals.drain())
