"""A node's main process: one single-threaded loop that alone talks to the broker.

Each turn of the loop waits (selectors) on: the signal pipe, every child's result pipe, and
the broker subscription (broadcasts and new-message wakeups), with a timeout set by the next
thing due (an ETA, a time limit, a heartbeat). Then it:

1. handles what arrived: signals, task outcomes from children, broadcasts;
2. moves due ETA tasks to the ready buffer and enforces time limits;
3. dispatches ready tasks to idle children, one task per child, honouring rate limits;
4. reserves more messages when the buffer runs low (prefetch = concurrency x multiplier);
5. commits everything the turn produced (results, acks, retries) in one batch.

Delivery: a reserved message stays reserved until its task finished and its result is
stored; early-acked tasks are only marked started (so a dead node's running task is reported
lost, not re-run), acks-late tasks are re-run. Shutdown returns every unstarted message.
"""

from __future__ import annotations

import collections
import contextlib
import faulthandler
import heapq
import itertools
import logging
import os
import selectors
import signal
import sys
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fleet import __version__
from fleet.engine import message as codec
from fleet.engine import states
from fleet.engine.pool import Child, ChildSettings, Pool
from fleet.engine.ratelimit import TokenBucket, parse_rate
from fleet.engine.results import exception_meta
from fleet.engine.transport.base import (
    Batch,
    ConsumerInfo,
    Delivery,
    Outgoing,
    Pending,
    ReserveRequest,
)
from fleet.exceptions import (
    BrokerUnavailable,
    MessageDecodeError,
    NotRegistered,
    TaskRevokedError,
    TimeLimitExceeded,
    WorkerLostError,
)
from fleet.operator_errors import FleetError
from fleet.signals import SignalRecorder, describe_wait_status, lost_reason, signal_name

if TYPE_CHECKING:
    from fleet.engine.app import Fleet
    from fleet.engine.message import TaskMessage
    from fleet.engine.task import Task

log = logging.getLogger("fleet.worker")

RUNNING, WARM, COLD, STOPPED = "running", "warm shutdown", "cold shutdown", "stopped"
REDELIVERY_HEADER = "x-fleet-redeliveries"
MAX_BOOT_FAILURES = 5
#: A child that fails to come up after the node is ready is retried with this backoff
#: (doubling from the first to the last), never given up: recycling must not wedge a node.
RESPAWN_BACKOFF = (0.1, 10.0)
#: Commits are batched across loop turns while tasks keep finishing: a batch is written once
#: it holds FLUSH_SIZE operations or is FLUSH_DELAY seconds old, and at once when the node
#: has nothing running. One round trip then settles many tasks.
FLUSH_SIZE = 64
FLUSH_DELAY = 0.002
CLEANUP_INTERVAL = 60.0
PROGRESS_INTERVAL = 5.0

HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1,
                   signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD)


@dataclass
class NodeOptions:
    nodename: str
    queues: list[str]
    concurrency: int
    loglevel: int = logging.WARNING
    logfile: str | None = None
    pidfile: str | None = None
    prefetch_multiplier: int = 4
    max_tasks_per_child: int | None = None
    max_memory_per_child: int | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    send_events: bool = False
    #: (max, min) children for autoscaling (`--autoscale MAX,MIN`), or None.
    autoscale: tuple[int, int] | None = None
    #: Called once the node is consuming (readiness handshakes: detach, sd_notify).
    on_ready: list[Callable[[Node], None]] = field(default_factory=list)


@dataclass
class Job:
    delivery: Delivery
    message: TaskMessage
    task: Task
    received: float
    acks_late: bool
    ignore_result: bool
    child: Child | None = None
    started: float | None = None
    soft_deadline: float | None = None
    hard_deadline: float | None = None
    soft_limit: float | None = None
    hard_limit: float | None = None
    soft_sent: bool = False
    terminate: int | None = None  #: signal a remote terminate asked for
    #: When it became ready to run (monotonic): its reception, or its eta for an ETA job.
    due: float = 0.0

    @property
    def label(self) -> str:
        return f"{self.message.task}[{self.message.id}]"


class Node:
    """One node: run it with `Node(app, options).run()`, which returns the exit code."""

    def __init__(self, app: Fleet, options: NodeOptions):
        self.app = app
        self.options = options
        self.name = options.nodename
        self.conf = app.conf
        self.state = RUNNING
        self.exit_code = 0
        self.restart_requested = False
        self.consumer_id = f"{self.name}#{uuid.uuid4().hex[:10]}"
        self.queues = list(dict.fromkeys(options.queues))
        self.buffer: collections.deque[Job] = collections.deque()
        self.scheduled: list[tuple[float, int, Job]] = []  # heap of ETA jobs held here
        self.active: dict[str, Job] = {}  # delivery id -> job running in a child
        self.batch = Batch()
        self.buckets: dict[str, TokenBucket | None] = {}
        #: Jobs over their task's rate limit, per task name, waiting for a token. They do not
        #: count against the prefetch, so they never keep other tasks from being reserved.
        self.throttled: dict[str, collections.deque[Job]] = {}
        self.revoked: set[str] = set()
        self.processed: collections.Counter[str] = collections.Counter()
        self.started_at = time.time()
        self._init_loop_state()
        self.selector = selectors.DefaultSelector()
        self.signals = SignalRecorder()
        self.pidfile = None
        self.subscription = None
        self.broker = None
        self.backend = None
        self.result_store = None
        self.pool: Pool | None = None
        self.autoscaler = None  #: an `Autoscaler` when --autoscale is on
        #: Extension points, called in the main loop (never from a signal handler):
        #: "ready"(node), "received"(node, job), "started"(node, job),
        #: "settled"(node, job, state, header), "committed"(node, batch) once a batch's
        #: results and acks are in the store, "broadcast"(node, channel, payload),
        #: "heartbeat"(node), "shutdown"(node, how), "rejected"(node, delivery, reason) when a
        #: message goes to the dead-letter queue, "lost"(node, message, meta) for a task that
        #: was running on a dead node (found by recovery). Remote control, events and workflows
        #: plug in here instead of growing the loop.
        self.hooks: dict[str, list[Callable[..., None]]] = collections.defaultdict(list)
        #: Timers run by the loop: each callback gets `now` (time.monotonic()) and returns
        #: when it wants to run next (a monotonic time). Embedded beat and autoscaling use it.
        self.timers: list[list] = []  # [due, callback]
        #: Broadcast channels to listen to (remote control adds its own before start).
        self.channels: list[str] = []
        from fleet.engine import workflow  # main-process failures follow their workflow

        workflow.attach(self)

    # == lifecycle =============================================================================

    def run(self) -> int:
        """Start, loop until shut down, clean up; return the exit code."""
        try:
            self.start()
            self.loop()
        finally:
            self.close()
        if self.restart_requested and self.exit_code == 0:
            restart_in_place()
        return self.exit_code

    def start(self) -> None:
        from fleet.daemon import PidFile
        from fleet.engine.log import setup_logging

        set_title(f"fleet worker {self.name} main")
        self._log_fd = setup_logging(self.name, "main", self.options.loglevel,
                                     self.options.logfile, index=0)
        self.signals.install(HANDLED_SIGNALS)
        self.selector.register(self.signals, selectors.EVENT_READ, self._on_signals)
        if self.options.pidfile:
            self.pidfile = PidFile(self.options.pidfile, self.name)
            self.pidfile.acquire()
        self.broker = connect_with_retry(self.app, self.signals)
        self.backend = self.app.backend
        self.result_store = self.app.result_store
        self.broker.register(self.consumer_info())
        self.subscription = self.broker.subscribe(self.channels, self.queues)
        self._watch_subscription()
        self._recover_dead_nodes()
        if self.options.autoscale:
            from fleet.engine.autoscale import Autoscaler

            maximum, minimum = self.options.autoscale
            scaler = Autoscaler(self, maximum, minimum, self.conf.worker_autoscale_keepalive)
            scaler.attach()
            self.options.concurrency = scaler.initial
        self.pool = Pool(self.child_settings(), self.options.concurrency)
        for slot in self.pool.free_slots():
            self._spawn(slot)
        self.print_banner()

    def add_timer(self, callback: Callable[[float], float], due: float = 0.0) -> None:
        """Run `callback(now)` in the loop at `due` (monotonic), then when it says next."""
        self.timers.append([due, callback])

    def _run_timers(self, now: float) -> None:
        for timer in self.timers:
            if now >= timer[0]:
                timer[0] = timer[1](now)

    def emit(self, event: str, *args: Any) -> None:
        """Call the hooks of `event`; a failing hook is logged, never fatal to the node."""
        for hook in self.hooks.get(event, ()):
            try:
                hook(self, *args)
            except self.broker_errors() as exc:
                self._broker_trouble(f"{event} hook", exc)
            except Exception:
                log.exception("%s: the %r hook %s failed", self.name, event,
                              getattr(hook, "__qualname__", hook))

    def child_settings(self) -> ChildSettings:
        return ChildSettings(
            app=self.app, nodename=self.name, loglevel=self.options.loglevel,
            logfile=self.options.logfile, max_tasks=self.options.max_tasks_per_child,
            max_memory_kib=self.options.max_memory_per_child, after_fork=self._after_fork)

    def _after_fork(self) -> None:
        """In a new child: drop the main process's selector, pipes and log fd."""
        self.selector.close()
        self.signals.close()
        if self._log_fd is not None:
            os.close(self._log_fd)

    def loop(self) -> None:
        while self.state != STOPPED:
            timeout = self._timeout()
            for key, _ in self.selector.select(timeout):
                key.data()
            self._turn()

    def close(self) -> None:
        """Final cleanup, whatever happened: return what we hold, release the pid file."""
        if self.pool is not None:
            for child in list(self.pool.children.values()):
                self.pool.kill_group(child, signal.SIGKILL, "node exit")
            deadline = time.monotonic() + 2.0
            while self.pool.children and time.monotonic() < deadline:
                self.pool.reap()
                time.sleep(0.01)
        if self.broker is not None:
            self._return_unstarted()
            self._flush(final=True)
            try:
                self.broker.unregister(self.consumer_id)
            except Exception as exc:
                log.warning("Could not unregister from the broker: %s", exc)
            if self.subscription is not None:
                self.subscription.close()
        if self.pidfile is not None:
            if self.restart_requested and self.exit_code == 0:
                self.pidfile.keep_across_exec()  # same pid, same lock: never "stopped"
            else:
                self.pidfile.release()
        self.signals.restore()
        if self.state == STOPPED:
            log.info("%s stopped.", self.name)

    # == the loop's turn ========================================================================

    def _init_loop_state(self) -> None:
        """The loop's bookkeeping: due times, the round trip under way, failure counts."""
        self._sequence = itertools.count()
        self._want_fetch = True
        self._last_fetch = 0.0
        self._fetched_at = time.monotonic()  #: last reserve round trip that came back
        #: New-message wakeups seen, and how many when the round trip under way was sent.
        self._wakes = self._pending_wakes = 0
        self._next_heartbeat = 0.0
        self._next_subscription_poll = 0.0
        self._next_cleanup = 0.0
        self._next_progress = 0.0
        self._batch_since: float | None = None
        self._pending: Pending | None = None
        self._pending_batch: Batch | None = None
        self._pending_wanted = 0
        self._pending_fd: int | None = None
        self._broker_retry_at = 0.0
        self._broker_failures = 0
        self._boot_failures = 0
        self._spawn_not_before = 0.0
        self._cold_deadline: float | None = None
        self._ready = False
        self._log_fd: int | None = None

    def _timeout(self) -> float:
        now = time.monotonic()
        deadlines = [self._next_heartbeat]
        if self.subscription is not None and self.subscription.fileno() is None:
            deadlines.append(self._next_subscription_poll)
        if self.scheduled:
            deadlines.append(now + max(0.0, self.scheduled[0][0] - time.time()))
        if self.active:
            deadlines += [d for job in self.active.values()
                          for d in (job.soft_deadline, job.hard_deadline) if d is not None]
        idle_broker = self._pending is None  # else its reply wakes us
        if idle_broker and self.state == RUNNING and self._has_capacity():
            deadlines.append(self._last_fetch + self._poll_interval())
        deadlines += self._waiting_work_deadlines(now)
        if self._cold_deadline is not None:
            deadlines.append(self._cold_deadline)
        if self.pool is not None and self.pool.terminating:
            deadlines += self.pool.terminating.values()
        if self._spawn_not_before:
            deadlines.append(self._spawn_not_before)
        deadlines += [timer[0] for timer in self.timers]
        if idle_broker and self._batch_since is not None:
            deadlines.append(self._batch_since + FLUSH_DELAY)
        if self.state != RUNNING:
            deadlines.append(now + 0.5)
        return max(0.0, min(min(deadlines) - now, 1.0))

    def _waiting_work_deadlines(self, now: float) -> list[float]:
        """When buffered or rate-limited work may move: a token comes, or prefetched tasks
        stuck behind long ones are due to be handed back (_release_hostages)."""
        if not (self.buffer or self.throttled):
            return []
        if any(self._idle_children()):
            return [now + self._rate_wait()]
        if self.buffer and self.active:
            oldest = min(job.started for job in self.active.values())
            return [max(self.buffer[0].due, oldest) + self.conf.worker_prefetch_timeout]
        return []

    def _poll_interval(self) -> float:
        return self.subscription.poll_interval if self.subscription else 1.0

    def _turn(self) -> None:
        now = time.monotonic()
        if now >= self._next_heartbeat:
            self._heartbeat(now)
        if now >= self._next_subscription_poll and self.subscription is not None and \
                self.subscription.fileno() is None:
            # Transports without a descriptor (SQLite) are polled, busy or not, so remote
            # control answers within a poll interval even while every child is busy.
            self._next_subscription_poll = now + self._poll_interval()
            self._on_subscription()
        if self.timers:
            self._run_timers(now)
        self._release_due_etas()
        if self.active:
            self._enforce_time_limits(now)
        if self.pool.terminating:
            self.pool.escalate(now)
        if self.buffer and self.active:
            self._release_hostages(now)
        if self._spawn_not_before and now >= self._spawn_not_before:
            self._spawn_not_before = 0.0
            self._fill_pool()
        self._dispatch()
        self._exchange(now)
        if self.state != RUNNING:
            self._shutdown_progress(now)

    # == receiving ==============================================================================

    def _has_capacity(self) -> bool:
        return len(self.buffer) + len(self.active) < self.prefetch_limit

    @property
    def prefetch_limit(self) -> int:
        return max(1, self.options.concurrency * self.options.prefetch_multiplier)

    def _exchange(self, now: float) -> None:
        """Send this turn's batch and ask for more messages in one round trip, unless one is
        under way already; its reply is read when it arrives (`_on_pending`), so the loop
        keeps feeding children meanwhile."""
        if self._pending is not None or now < self._broker_retry_at:
            return
        reserve = self._reserve_request(now)
        if reserve is None and not self._should_flush(now):
            return
        batch, self.batch, self._batch_since = self.batch, Batch(), None
        if not self._store_results_elsewhere(batch):
            return
        if reserve is not None:
            self._last_fetch = now
        self._pending = self.broker.submit(self.consumer_id, batch, reserve)
        self._pending_batch = batch
        self._pending_wanted = reserve.limit if reserve else 0
        self._pending_wakes = self._wakes
        fd = self._pending.fileno()
        if fd is None:
            self._on_pending()
        else:
            self.selector.register(fd, selectors.EVENT_READ, self._on_pending)
            self._pending_fd = fd

    def _reserve_request(self, now: float) -> ReserveRequest | None:
        if self.state != RUNNING or not self._ready:
            return None
        wanted = self.prefetch_limit - len(self.buffer) - len(self.active)
        if wanted > 0 and self.active and self._busy_for_long(now):
            # a long task runs here: take only what idle children start now, leave the rest
            # to other nodes (see _release_hostages)
            wanted = min(wanted, len(self._idle_children()) + self._growth_room() -
                         len(self.buffer))
        if wanted <= 0:
            return None
        if not self._want_fetch and now - self._last_fetch < self._poll_interval():
            return None
        # Batch: wait until a good chunk is free unless children would go idle.
        if wanted < self.prefetch_limit // 2 and self.buffer:
            return None
        return ReserveRequest(self.queues, wanted, self.conf.worker_eta_horizon)

    def _busy_for_long(self, now: float) -> bool:
        """Whether a task here has been running longer than worker_prefetch_timeout."""
        limit = self.conf.worker_prefetch_timeout
        return any(now - job.started > limit for job in self.active.values())

    def _growth_room(self) -> int:
        """Children the autoscaler may still add."""
        if self.autoscaler is None:
            return 0
        return max(0, self.autoscaler.maximum - self.options.concurrency)

    def _release_hostages(self, now: float) -> None:
        """Prefetched messages that wait behind long tasks go back to their queue, so an idle
        node runs them instead of them waiting here for a child (celery#2994, #6500)."""
        if now - self.buffer[0].due < self.conf.worker_prefetch_timeout or \
                any(self._idle_children()) or self._growth_room() or \
                not self._busy_for_long(now):
            return
        log.info("Every child is busy with a long task: returning %d prefetched message(s) "
                 "to their queues for other nodes", len(self.buffer))
        self.batch.requeues += [job.delivery.id for job in self.buffer]
        self.buffer.clear()

    def _should_flush(self, now: float) -> bool:
        batch = self.batch
        if not batch:
            return False
        if self._batch_since is None:
            self._batch_since = now
        size = len(batch.results) + len(batch.puts) + len(batch.acks) + len(batch.started) + \
            len(batch.requeues)
        return size >= FLUSH_SIZE or now - self._batch_since >= FLUSH_DELAY or \
            not self.active or self.state != RUNNING

    def _on_pending(self) -> None:
        pending, batch, wanted = self._pending, self._pending_batch, self._pending_wanted
        if self._pending_fd is not None:
            self.selector.unregister(self._pending_fd)
            self._pending_fd = None
        self._pending = self._pending_batch = None
        try:
            deliveries = pending.result()
        except self.broker_errors() as exc:
            self._broker_trouble("commit/reserve", exc)
            self._restore(batch)
            return
        self._broker_ok()
        self.emit("committed", batch)
        if wanted:  # fetch again at once if it came back full or a wakeup came meanwhile
            self._want_fetch = len(deliveries) == wanted or self._wakes != self._pending_wakes
            self._fetched_at = time.monotonic()
        if self.state != RUNNING:  # reserved while we began shutting down: give them back
            self.batch.requeues += [delivery.id for delivery in deliveries]
            return
        for delivery in deliveries:
            self._receive(delivery)

    def _store_results_elsewhere(self, batch: Batch) -> bool:
        """With a separate result backend, write the batch's results there first (before
        their acks reach the broker); False (batch kept for later) if that store fails."""
        if self.result_store is self.broker or not batch.results:
            return True
        try:
            self.result_store.set_values(batch.results)
        except (*self.result_store.transient_errors, BrokerUnavailable) as exc:
            self._broker_trouble("storing results", exc)
            self._restore(batch)
            return False
        batch.results = []
        return True

    def _restore(self, batch: Batch) -> None:
        """Put a batch that failed back in front of the current one, in order."""
        for name in ("results", "puts", "started", "acks", "requeues"):
            getattr(batch, name).extend(getattr(self.batch, name))
        self.batch = batch

    def _wait_pending(self) -> None:
        """Finish the round trip under way (before anything that must come after it)."""
        if self._pending is not None:
            self._on_pending()

    def _receive(self, delivery: Delivery) -> None:
        try:
            msg = codec.decode(delivery.body)
        except MessageDecodeError as exc:
            self._dead_letter(delivery, f"undecodable message: {exc.one_line()}")
            return
        task = self.app.tasks.get(msg.task)
        if task is None:
            self._unknown_task(delivery, msg)
            return
        options = msg.options
        job = Job(delivery, msg, task, time.monotonic(),
                  acks_late=_first(options.get("acks_late"), task.acks_late),
                  ignore_result=_first(options.get("ignore_result"), task.ignore_result))
        job.due = job.received
        log.info("Task %s received", job.label)
        self.emit("received", job)
        if msg.eta is not None and msg.eta > time.time():
            heapq.heappush(self.scheduled, (msg.eta, next(self._sequence), job))
        else:
            self.buffer.append(job)

    def _unknown_task(self, delivery: Delivery, msg: TaskMessage) -> None:
        registered = ", ".join(sorted(self.app.tasks)) or "none"
        reason = (f"unknown task {msg.task!r} (id {msg.id}); this node has: {registered}. "
                  "Likely cause: the sender runs other code than this node, or the module "
                  "defining the task is not imported by the worker (add it to include=[...])")
        self._dead_letter(delivery, reason)
        exc = NotRegistered(f"unknown task {msg.task!r}: no node consuming {delivery.queue!r} "
                            "has it registered", "see the dead-letter queue fleet.dead")
        self._store_meta(exception_meta(msg.id, states.FAILURE, exc, None, task=msg.task,
                                        node=self.name))

    def _dead_letter(self, delivery: Delivery, reason: str) -> None:
        log.error("Moved message %s from queue %r to the dead-letter queue: %s. Its body "
                  "starts with: %.200r", delivery.id, delivery.queue, reason, delivery.body)
        self._flush()  # the dead letter must not overtake earlier acks
        self.emit("rejected", delivery, reason)
        try:
            self.broker.dead_letter(self.consumer_id, delivery, reason)
        except self.broker_errors() as exc:
            self._broker_trouble("dead-letter", exc)
            self.batch.requeues.append(delivery.id)

    def _release_due_etas(self) -> None:
        now = time.time()
        while self.scheduled and self.scheduled[0][0] <= now:
            _, _, job = heapq.heappop(self.scheduled)
            job.due = time.monotonic()
            self.buffer.append(job)

    # == dispatching ============================================================================

    def _idle_children(self) -> list[Child]:
        return [child for child in self.pool.children.values() if child.idle] if self.pool \
            else []

    def _dispatch(self) -> None:
        if not (self.buffer or self.throttled) or self.state == COLD:
            return
        idle = self._idle_children()
        if not idle:
            return
        if self.throttled:
            self._dispatch_throttled(idle)
        postponed = []
        while idle and self.buffer:
            job = self.buffer.popleft()
            if self._refuse(job):
                continue
            bucket = self._bucket(job.task)
            if bucket is not None and (job.task.name in self.throttled or not bucket.take()):
                if not self._throttle(job, bucket):
                    postponed.append(job)
                continue
            self._start(job, idle.pop())
        self.buffer.extendleft(reversed(postponed))

    def _throttle(self, job: Job, bucket: TokenBucket) -> bool:
        """Hold a job over its rate limit aside (False: enough are held already, it stays in
        the buffer). A node holds at most what its rate lets it start within the ETA
        horizon (at least a prefetch's worth), so it never hoards a slow task's backlog."""
        waiting = self.throttled.setdefault(job.task.name, collections.deque())
        if len(waiting) >= max(self.prefetch_limit,
                               bucket.rate * self.conf.worker_eta_horizon):
            return False
        waiting.append(job)
        return True

    def _dispatch_throttled(self, idle: list[Child]) -> None:
        for name, waiting in list(self.throttled.items()):
            bucket = self.buckets.get(name)
            while waiting and idle:
                if self._refuse(waiting[0]):
                    waiting.popleft()
                    continue
                if bucket is not None and not bucket.take():
                    break
                self._start(waiting.popleft(), idle.pop())
            if not waiting:
                del self.throttled[name]

    def _refuse(self, job: Job) -> bool:
        """Revoked or expired tasks are not run: REVOKED result, message acked."""
        msg = job.message
        if msg.id in self.revoked:
            reason = "revoked"
            text = f"task {msg.id} was revoked before it started"
        elif msg.expires is not None and msg.expires < time.time():
            reason = "expired"
            text = f"task {msg.id} expired at {_utc(msg.expires)} before it started"
        else:
            return False
        log.info("Task %s %s: not running it", job.label, reason)
        exc = TaskRevokedError(text)
        self._finish(job, exception_meta(msg.id, states.REVOKED, exc, None, task=msg.task,
                                         node=self.name, reason=reason))
        return True

    def _bucket(self, task: Task) -> TokenBucket | None:
        if task.name not in self.buckets:
            self.set_rate_limit(task, task.rate_limit or self.conf.task_default_rate_limit)
        return None if self.conf.worker_disable_rate_limits else self.buckets[task.name]

    def set_rate_limit(self, task: Task, rate: str | float | None) -> None:
        """Change a task's rate limit on this node now (None or 0: no limit); jobs held for
        the old rate get the new one (remote `rate_limit` calls this)."""
        per_second = parse_rate(rate)
        self.buckets[task.name] = TokenBucket(per_second) if per_second else None
        if not per_second and task.name in self.throttled:
            self.buffer.extendleft(reversed(self.throttled.pop(task.name)))

    def _rate_wait(self) -> float:
        waits = [bucket.wait_time() for job in self.buffer
                 if (bucket := self.buckets.get(job.task.name)) is not None]
        waits += [bucket.wait_time() for name in self.throttled
                  if (bucket := self.buckets.get(name)) is not None]
        return min(waits) if waits else 0.0

    def _start(self, job: Job, child: Child) -> None:
        msg = job.message
        now = time.monotonic()
        job.child, child.job, job.started = child, job, now
        self.active[job.delivery.id] = job
        job.soft_limit = _first(msg.options.get("soft_time_limit"), job.task.soft_time_limit,
                                self.options.soft_time_limit, self.conf.task_soft_time_limit)
        job.hard_limit = _first(msg.options.get("time_limit"), job.task.time_limit,
                                self.options.time_limit, self.conf.task_time_limit)
        job.soft_deadline = now + job.soft_limit if job.soft_limit else None
        job.hard_deadline = now + job.hard_limit if job.hard_limit else None
        delivery = job.delivery
        header = {"delivery": {"queue": delivery.queue, "priority": delivery.priority,
                               "redelivered": delivery.redelivered}}
        self.pool.send(child, header, delivery.body)
        self.emit("started", job)
        if not job.acks_late:
            self.batch.started.append(delivery.id)
        if _first(msg.options.get("track_started"), job.task.track_started) and \
                not job.ignore_result:
            self._store_meta({"id": msg.id, "state": states.STARTED, "result": None,
                              "task": msg.task, "node": self.name, "pid": child.pid,
                              "started_at": time.time()})

    # == outcomes ===============================================================================

    def _on_child_readable(self, child: Child) -> None:
        frames, eof = self.pool.read(child)
        for header, payload in frames:
            self._on_frame(child, header, payload)
        if eof:
            self._forget_child_pipe(child)

    def _on_frame(self, child: Child, header: dict, payload: bytes) -> None:
        if header.get("t") == "up":
            child.up = True
            self._boot_failures = 0
            if not self._ready and all(c.up for c in self.pool.children.values()):
                self._become_ready()
            return
        job = child.job
        if job is None or header.get("id") != job.message.id:
            return  # the job was already settled (hard limit, cold shutdown)
        child.job = None
        child.tasks_done += 1
        del self.active[job.delivery.id]
        if header.get("retiring"):
            log.info("Child %d (pid %d) %s: replacing it", child.slot, child.pid,
                     header["retiring"])
            child.retiring = header["retiring"]
        self._settle(job, header, payload)
        if child.retiring or self.state != RUNNING:
            self.pool.retire(child)
            self._fill_pool()  # the replacement starts while this one exits

    def _settle(self, job: Job, header: dict, payload: bytes) -> None:
        state, runtime = header["state"], header["runtime"]
        msg = job.message
        self.processed[msg.task] += 1
        if header.get("terminated") or (job.terminate and state == states.REVOKED):
            log.warning("Task %s terminated after %s", job.label, format_runtime(runtime))
        elif state == states.SUCCESS:
            log.info("Task %s succeeded in %s: %s", job.label, format_runtime(runtime),
                     header["summary"])
        elif state == states.RETRY:
            log.info("Task %s %s", job.label, header["summary"])
            self._put_retry(job, header["retry"])
        else:
            log.error("Task %s failed in %s: %s", job.label, format_runtime(runtime),
                      header["summary"])
        if not job.ignore_result and payload:
            self.batch.results.append(self.backend.store_encoded(msg.id, payload.decode()))
        for item in header.get("send", ()):  # follow-up messages (workflow callbacks)
            self.batch.puts.append(Outgoing(codec.new_id(), item["queue"], item["body"],
                                            item.get("priority", 0), item.get("eta")))
        self.batch.acks.append(job.delivery.id)
        self.emit("settled", job, state, header)

    def _put_retry(self, job: Job, retry: dict) -> None:
        msg = job.message
        again = codec.TaskMessage(**{**_message_fields(msg), "retries": msg.retries + 1,
                                     "eta": retry.get("eta"),
                                     "args": retry.get("args", msg.args),
                                     "kwargs": retry.get("kwargs", msg.kwargs)})
        self.batch.puts.append(Outgoing(codec.new_id(), job.delivery.queue, again.encode(),
                                        job.delivery.priority, again.eta))

    def _finish(self, job: Job, meta: dict) -> None:
        """Settle a job without an outcome from a child (revoked, lost, time limit)."""
        if not job.ignore_result or meta["state"] != states.SUCCESS:
            self._store_meta(meta)
        self.batch.acks.append(job.delivery.id)
        self.emit("settled", job, meta["state"], {"id": meta["id"], "state": meta["state"],
                                                  "meta": meta})

    def _store_meta(self, meta: dict) -> None:
        self.batch.results.append(self.backend.stored(meta))

    # == children ===============================================================================

    def _spawn(self, slot: int) -> None:
        try:
            child = self.pool.spawn(slot)
        except OSError as exc:
            self._boot_failed(None, f"could not be forked ({exc})")
            return
        self.selector.register(child.result_fd, selectors.EVENT_READ,
                               lambda: self._on_child_readable(child))

    def _forget_child_pipe(self, child: Child) -> None:
        if child.result_fd >= 0:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(child.result_fd)
            self.pool.close_result_pipe(child)

    def _reap(self) -> None:
        for child, status in self.pool.reap():
            if child.result_fd >= 0:
                self._on_child_readable(child)  # an outcome written just before exiting
            self._forget_child_pipe(child)
            if child.job is not None:
                self._job_lost(child, status)
            elif not child.up and self.state == RUNNING:
                self._boot_failed(child, describe_wait_status(status))
            elif not (child.retiring or child.killed_for or self.state != RUNNING):
                log.warning("Child %d (pid %d) %s while idle: replacing it", child.slot,
                            child.pid, describe_wait_status(status))
        self._fill_pool()

    def _fill_pool(self) -> None:
        if self.state != RUNNING or time.monotonic() < self._spawn_not_before:
            return
        for slot in self.pool.free_slots():
            self._spawn(slot)
            if self._spawn_not_before:  # that one failed: the others wait for the backoff
                return

    def _boot_failed(self, child: Child | None, how: str) -> None:
        """A new child did not come up. Before the node is ready that is a boot error (fail
        fast after a few); afterwards (recycling, a crash) it is retried with backoff for as
        long as it takes, so the node never ends up wedged with an empty slot."""
        self._boot_failures += 1
        which = f"Child {child.slot} (pid {child.pid})" if child else "A new child"
        if not self._ready and self._boot_failures >= MAX_BOOT_FAILURES:
            log.error("%s %s before it was ready", which, how)
            log.critical("Children keep dying at start (%d in a row): stopping the node. "
                         "See the errors above.", self._boot_failures)
            self.exit_code = 1
            self.begin_shutdown(COLD)
            return
        first, most = RESPAWN_BACKOFF
        delay = min(most, first * 2 ** (self._boot_failures - 1))
        self._spawn_not_before = time.monotonic() + delay
        log.error("%s %s before it was ready; starting a replacement in %.1fs (attempt %d)",
                  which, how, delay, self._boot_failures + 1)

    def _check_boot_timeouts(self, now: float) -> None:
        """Kill children that did not report ready within worker_proc_alive_timeout (the
        reaper then counts them as failed starts and retries)."""
        limit = self.conf.worker_proc_alive_timeout
        for child in list(self.pool.children.values()):
            if not child.up and not child.killed_for and now - child.born > limit:
                log.error("Child %d (pid %d) did not report ready within %gs: killing it",
                          child.slot, child.pid, limit)
                self.pool.kill_group(child, signal.SIGKILL, "no ready report")

    def _job_lost(self, child: Child, status: int) -> None:
        job = child.job
        child.job = None
        self.active.pop(job.delivery.id, None)
        how = describe_wait_status(status)
        msg = job.message
        if job.terminate is not None:
            log.warning("Task %s terminated (%s)", job.label, how)
            exc = TaskRevokedError(f"task {msg.id} was terminated with signal "
                                   f"{signal_name(job.terminate)}")
            self._finish(job, exception_meta(msg.id, states.REVOKED, exc, None,
                                             task=msg.task, node=self.name))
            return
        redeliveries = int(msg.headers.get(REDELIVERY_HEADER, 0))
        requeue = job.acks_late and _first(msg.options.get("reject_on_worker_lost"),
                                           job.task.reject_on_worker_lost)
        if requeue and redeliveries < self.conf.worker_lost_max_redeliveries:
            log.error("Task %s lost: its process %s. Acks-late task rejected on worker lost: "
                      "sent back to queue %r (redelivery %d of at most %d)", job.label, how,
                      job.delivery.queue, redeliveries + 1,
                      self.conf.worker_lost_max_redeliveries)
            again = codec.TaskMessage(**{**_message_fields(msg), "headers": {
                **msg.headers, REDELIVERY_HEADER: redeliveries + 1}})
            self.batch.puts.append(Outgoing(codec.new_id(), job.delivery.queue, again.encode(),
                                            job.delivery.priority))
            self.batch.acks.append(job.delivery.id)
            return
        detail = f"{lost_reason(status)}: the child process running it (pid {child.pid}) died"
        if requeue:
            detail += f"; it was already redelivered {redeliveries} times: giving up"
        log.error("Task %s lost: %s", job.label, detail)
        exc = WorkerLostError(f"worker lost: {detail}")
        self._finish(job, exception_meta(msg.id, states.FAILURE, exc, None, task=msg.task,
                                         node=self.name))

    def _enforce_time_limits(self, now: float) -> None:
        for job in list(self.active.values()):
            if job.hard_deadline is not None and now >= job.hard_deadline:
                self._hard_limit(job)
            elif job.soft_deadline is not None and now >= job.soft_deadline and \
                    not job.soft_sent:
                job.soft_sent = True
                log.warning("Soft time limit (%gs) exceeded for %s", job.soft_limit, job.label)
                self.pool.kill(job.child, signal.SIGUSR1)

    def _hard_limit(self, job: Job) -> None:
        child = job.child
        grace = self.conf.worker_shutdown_grace
        log.error("Hard time limit (%gs) exceeded for %s: terminating its process group "
                  "(pid %d; KILL in %gs), a new child takes the slot", job.hard_limit,
                  job.label, child.pid, grace)
        child.job = None
        child.retiring = "killed: hard time limit"
        self.active.pop(job.delivery.id, None)
        self.pool.terminate(child, grace, "hard time limit")
        self._fill_pool()
        msg = job.message
        exc = TimeLimitExceeded(job.hard_limit)
        self._finish(job, exception_meta(msg.id, states.FAILURE, exc, None, task=msg.task,
                                         node=self.name))

    def grow(self, n: int = 1, why: str = "pool_grow") -> None:
        """Add `n` children (TTIN, remote pool_grow). With autoscale on, a size over its
        maximum is refused with a FleetError that says so."""
        if self.autoscaler is not None:
            self.autoscaler.check(self.options.concurrency + n, why)
        self.resize(self.options.concurrency + n)

    def set_queues(self, queues: list[str]) -> None:
        """Consume from `queues` from now on (remote add_consumer/cancel_consumer)."""
        self.queues = list(dict.fromkeys(queues))
        self._want_fetch = True
        self._resubscribe()  # wakeups for the new queues

    def shrink(self, n: int = 1, why: str = "pool_shrink") -> None:
        """Remove `n` children (TTOU, remote pool_shrink); busy ones finish their task
        first. Never below one child, or below the autoscale minimum (refused)."""
        target = self.options.concurrency - n
        if self.autoscaler is not None:
            self.autoscaler.check(target, why)
        self.resize(max(1, target) if self.autoscaler is None else target)

    def resize(self, target: int) -> None:
        """Set the pool's size now (no bounds checked: callers do)."""
        previous = self.options.concurrency
        self.options.concurrency = self.pool.concurrency = target
        if target >= previous:
            log.info("Pool grows to %d children", target)
            self._fill_pool()
            return
        log.info("Pool shrinks to %d children", target)
        for child in self.pool.children.values():
            if child.slot > target and not child.retiring:
                child.retiring = "pool shrank"
                if child.job is None:
                    self.pool.retire(child)

    # == signals ================================================================================

    def _on_signals(self) -> None:
        for signum in self.signals.drain():
            handler = getattr(self, f"handle_{signal_name(signum).lower()}", None)
            if handler is not None:
                handler()

    def handle_chld(self) -> None:
        self._reap()

    def handle_term(self) -> None:
        self.begin_shutdown(WARM, "TERM")

    def handle_int(self) -> None:
        if self.state == RUNNING:
            log.warning("Warm shutdown (INT): press Ctrl-C again for a cold shutdown that "
                        "stops running tasks")
            self.begin_shutdown(WARM, "INT")
        else:
            self.begin_shutdown(COLD, "second INT")

    def handle_quit(self) -> None:
        self.begin_shutdown(COLD, "QUIT")

    def handle_hup(self) -> None:
        if self.state == RUNNING:
            log.warning("Restarting in place (HUP): warm shutdown, then the same command again")
            self.restart_requested = True
            self.begin_shutdown(WARM, "HUP")

    def handle_usr1(self) -> None:
        stream = self._log_fd if self._log_fd is not None else sys.stderr.fileno()
        log.warning("Stack dump requested (USR1): main process below, children in their logs")
        faulthandler.dump_traceback(file=stream, all_threads=True)
        for child in self.pool.children.values():
            self.pool.kill(child, signal.SIGUSR2)

    def handle_ttin(self) -> None:
        try:
            self.grow(1, "TTIN")
        except FleetError as exc:
            log.warning("%s", exc.one_line())

    def handle_ttou(self) -> None:
        try:
            self.shrink(1, "TTOU")
        except FleetError as exc:
            log.warning("%s", exc.one_line())

    # == shutdown ===============================================================================

    def begin_shutdown(self, how: str, why: str = "") -> None:
        if how == WARM and self.state != RUNNING:
            log.info("Already in %s; ignoring %s", self.state, why or "the request")
            return
        if how == COLD and self.state in (COLD, STOPPED):
            return
        previous, self.state = self.state, how
        log.warning("%s%s", how.capitalize(), f" ({why})" if why else "")
        self.emit("shutdown", how)
        self._return_unstarted()
        if how == WARM:
            for child in list(self.pool.children.values()) if self.pool else []:
                if child.job is None:
                    self.pool.retire(child)
            if self.active:
                log.warning("Waiting for %d running task(s) to finish: %s", len(self.active),
                            ", ".join(job.label for job in self.active.values()))
        else:
            self._stop_running_tasks(previous)
        self._next_progress = time.monotonic() + PROGRESS_INTERVAL

    def _return_unstarted(self) -> None:
        """Send prefetched, ETA-held and rate-limited messages back to their queues."""
        jobs = list(self.buffer) + [job for _, _, job in self.scheduled]
        jobs += [job for waiting in self.throttled.values() for job in waiting]
        self.buffer.clear()
        self.throttled.clear()
        self.scheduled.clear()
        if jobs:
            log.info("Returning %d unstarted message(s) to their queues", len(jobs))
            self.batch.requeues += [job.delivery.id for job in jobs]

    def _stop_running_tasks(self, previous: str) -> None:
        for job in list(self.active.values()):
            child = job.child
            child.job = None
            self.active.pop(job.delivery.id)
            if job.acks_late:
                log.warning("Cold shutdown: stopping %s; acks-late, so it goes back to its "
                            "queue", job.label)
                self.batch.requeues.append(job.delivery.id)
            else:
                log.warning("Cold shutdown: stopping %s (marked failed)", job.label)
                msg = job.message
                exc = WorkerLostError(f"worker lost: node {self.name} shut down cold while "
                                      "the task ran")
                self._finish(job, exception_meta(msg.id, states.FAILURE, exc, None,
                                                 task=msg.task, node=self.name))
        for child in list(self.pool.children.values()) if self.pool else []:
            self.pool.retire(child)
            self.pool.kill_group(child, signal.SIGTERM, "cold shutdown")
        self._cold_deadline = time.monotonic() + self.conf.worker_shutdown_grace

    def _shutdown_progress(self, now: float) -> None:
        if self.pool is None or not self.pool.children:
            self.state = STOPPED
            return
        if self._cold_deadline is not None and now >= self._cold_deadline:
            for child in list(self.pool.children.values()):
                self.pool.kill_group(child, signal.SIGKILL, "cold shutdown")
            self._cold_deadline = None
        if now >= self._next_progress and self.active:
            self._next_progress = now + PROGRESS_INTERVAL
            log.warning("Still waiting for %d running task(s): %s", len(self.active),
                        ", ".join(job.label for job in self.active.values()))

    # == broker =================================================================================

    def broker_errors(self) -> tuple[type[BaseException], ...]:
        return (*self.broker.transient_errors, BrokerUnavailable)

    def _broker_trouble(self, action: str, exc: BaseException) -> None:
        self._broker_failures += 1
        delay = min(self.conf.broker_connection_retry_max_delay,
                    self.conf.broker_connection_retry_delay * 2 ** (self._broker_failures - 1))
        self._broker_retry_at = time.monotonic() + delay
        log.error("Broker error during %s (%s: %s); retrying in %.1fs", action,
                  type(exc).__name__, exc, delay)

    def _broker_ok(self) -> None:
        if self._broker_failures:
            log.warning("Broker reachable again after %d failed attempt(s)",
                        self._broker_failures)
            self._broker_failures = 0
            self._broker_retry_at = 0.0

    def _flush(self, final: bool = False) -> None:
        """Commit now, synchronously (after any round trip under way)."""
        self._wait_pending()
        if not self.batch or (not final and time.monotonic() < self._broker_retry_at):
            return
        batch, self.batch = self.batch, Batch()
        self._batch_since = None
        if not self._store_results_elsewhere(batch):
            return
        try:
            self.broker.commit(self.consumer_id, batch)
        except self.broker_errors() as exc:
            self._broker_trouble("commit", exc)
            self._restore(batch)  # keep the work for the next attempt, in order
            return
        self._broker_ok()
        self.emit("committed", batch)

    def _watch_subscription(self) -> None:
        fd = self.subscription.fileno()
        if fd is not None:
            self.selector.register(fd, selectors.EVENT_READ, self._on_subscription)

    def _on_subscription(self) -> None:
        try:
            broadcasts, woken = self.subscription.poll()
        except self.broker_errors() as exc:
            self._broker_trouble("subscription", exc)
            self._resubscribe()
            return
        if woken:
            self._want_fetch = True
            self._wakes += 1
        for channel, payload in broadcasts:
            self.emit("broadcast", channel, payload)

    def _resubscribe(self) -> None:
        fd = self.subscription.fileno()
        if fd is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(fd)
        with contextlib.suppress(Exception):  # the connection is already broken
            self.subscription.close()
        try:
            self.subscription = self.broker.subscribe(self.channels, self.queues)
        except self.broker_errors():
            return
        self._watch_subscription()

    def consumer_info(self) -> ConsumerInfo:
        from fleet.nodenames import gethostname

        return ConsumerInfo(self.consumer_id, self.name, self.queues, os.getpid(),
                            gethostname(), self.heartbeat_info())

    def heartbeat_info(self) -> dict[str, Any]:
        return {"active": len(self.active), "processed": sum(self.processed.values()),
                "concurrency": self.options.concurrency, "state": self.state,
                "loadavg": list(os.getloadavg()), "started": self.started_at,
                "version": __version__, "freq": self.conf.worker_heartbeat_interval,
                **self.consuming_info()}

    def consuming_info(self) -> dict[str, Any]:
        """What `fleet worker --check` needs to tell a node that is alive but not consuming:
        whether it is ready, how many children are up, broker trouble, and, while it waits
        for work (an idle child, nothing prefetched), how long ago a reserve came back."""
        children = self.pool.children.values() if self.pool else ()
        hungry = self.state == RUNNING and self._ready and not self.buffer and \
            any(child.idle for child in children)
        return {"ready": self._ready, "children_up": sum(1 for c in children if c.up),
                "broker_failures": self._broker_failures, "hungry": hungry,
                "fetch_age": round(time.monotonic() - self._fetched_at, 3),
                "heartbeat_interval": self.conf.worker_heartbeat_interval}

    def _heartbeat(self, now: float) -> None:
        self._next_heartbeat = now + self.conf.worker_heartbeat_interval
        if self.pool is not None:
            self._check_boot_timeouts(now)
        try:
            self.emit("heartbeat")
            self.broker.heartbeat(self.consumer_info())
            self._recover_dead_nodes()
            if now >= self._next_cleanup:
                self._next_cleanup = now + CLEANUP_INTERVAL
                self.broker.cleanup()
                if self.app.result_store is not self.broker:
                    self.app.result_store.cleanup()
        except self.broker_errors() as exc:
            self._broker_trouble("heartbeat", exc)

    def _recover_dead_nodes(self) -> None:
        report = self.broker.recover(self.conf.worker_heartbeat_timeout)
        for consumer_id in report.dead_consumers:
            log.warning("Node %s stopped sending heartbeats: recovered its messages "
                        "(%d returned to their queues)", consumer_id, report.requeued)
        for consumer_id, delivery in report.lost:
            self._report_lost(consumer_id, delivery)

    def _report_lost(self, consumer_id: str, delivery: Delivery) -> None:
        try:
            msg = codec.decode(delivery.body)
        except MessageDecodeError:
            return
        node = consumer_id.split("#", maxsplit=1)[0]
        log.error("Task %s[%s] was running on %s when it died: marked failed", msg.task, msg.id,
                  consumer_id)
        exc = WorkerLostError(f"worker lost: node {node} died while the task ran")
        meta = exception_meta(msg.id, states.FAILURE, exc, None, task=msg.task, node=node)
        self._store_meta(meta)
        self.emit("lost", msg, meta)

    # == readiness and banner ===================================================================

    def _become_ready(self) -> None:
        self._ready = True
        self._next_heartbeat = 0.0  # tell the broker (and `fleet worker --check`) at once
        log.warning("%s ready: consuming %s with %d children", self.name,
                    ", ".join(self.queues), len(self.pool.children))
        for hook in self.options.on_ready:
            hook(self)
        self.emit("ready")

    def print_banner(self) -> None:
        from fleet.engine.transport import mask_url

        results = self.app.result_backend_url
        shown_results = "(the broker)" if results == self.app.broker_url else mask_url(results)
        lines = [
            f" -------------- fleet {__version__}",
            f" node:         {self.name}",
            f" app:          {self.app.main or '__main__'}",
            f" broker:       {mask_url(self.app.broker_url)}",
            f" results:      {shown_results}",
            f" concurrency:  {self.options.concurrency} (prefork)",
            f" queues:       {', '.join(self.queues)}",
            f" pid:          {os.getpid()}",
            "",
            "[tasks]",
            *[f"  . {name}" for name in sorted(self.app.tasks)],
            "",
        ]
        text = "\n".join(lines) + "\n"
        if self._log_fd is not None:
            os.write(self._log_fd, text.encode())
        else:
            sys.stdout.write(text)
            sys.stdout.flush()


def format_runtime(seconds: float) -> str:
    """0.000042 -> '42us', 0.0123 -> '12.3ms', 4.5 -> '4.50s'."""
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f}us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f}ms"
    return f"{seconds:.2f}s"


def _first(*values: Any) -> Any:
    for value in values:
        if value is not None:
            return value
    return None


def _utc(epoch: float) -> str:
    """Epoch seconds as ISO 8601 in UTC, to the millisecond."""
    from datetime import UTC, datetime

    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")


def _message_fields(msg: TaskMessage) -> dict[str, Any]:
    return {name: getattr(msg, name) for name in msg.__slots__}


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


def restart_in_place() -> None:
    """Replace this process with the same command (same pid): HUP's warm restart."""
    # Already detached: the new image must not fork again (that would change the pid).
    argv = [sys.executable, "-m", "fleet", *_same_command(sys.argv[1:])]
    log.warning("Restarting: %s", " ".join(argv))
    logging.shutdown()
    os.execv(sys.executable, argv)


def _same_command(args: list[str]) -> list[str]:
    """The arguments for the new image: without --detach, and with a --workdir that was
    already entered (we are in it now) made absolute, so it is not entered twice."""
    result: list[str] = []
    for arg in args:
        options = "--" not in result  # after `--` come settings, left as they are
        if arg == "--detach" and options:
            continue
        if arg.startswith("--workdir=") and options:
            result.append(f"--workdir={os.getcwd()}")
        elif result and result[-1] == "--workdir" and options:
            result.append(os.getcwd())
        else:
            result.append(arg)
    return result


def set_title(title: str) -> None:
    try:
        import setproctitle
    except ImportError:  # pragma: no cover - a declared dependency
        return
    setproctitle.setproctitle(title)
