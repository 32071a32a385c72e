"""The dispatch buffer: which reserved job runs next, in which child, and when.

Received messages become jobs here (`receive`): undecodable ones and tasks this node does
not know go to the dead-letter queue; jobs with a future ETA wait in the ETA heap, the
others in the buffer. Each loop turn hands buffered jobs to idle children, one task per
child (`dispatch`), except revoked or expired ones (settled as REVOKED, never run) and those
over their task's rate limit (held aside until a token comes, see `_throttle`).

It also decides how much to prefetch (`wanted`): up to concurrency x prefetch multiplier
jobs, in chunks, and only what idle children start now while a long task runs here, and it
hands prefetched messages stuck behind long tasks back to their queues for other nodes
(`release_hostages`, celery#2994 and #6500).
"""

from __future__ import annotations

import collections
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from fleet.engine import message as codec
from fleet.engine import states
from fleet.engine.node.children import time_limits
from fleet.engine.node.jobs import COLD, Job, first
from fleet.engine.ratelimit import TokenBucket, parse_rate
from fleet.engine.results import exception_meta
from fleet.exceptions import MessageDecodeError, NotRegistered, TaskRevokedError

if TYPE_CHECKING:
    from collections.abc import Iterable

    from fleet.engine.message import TaskMessage
    from fleet.engine.pool import Child
    from fleet.engine.task import Task
    from fleet.engine.transport.base import Delivery
    from fleet.engine.worker import Node

log = logging.getLogger("fleet.worker")


class Dispatcher:
    """From a reserved message to a job running in a child."""

    def __init__(self, node: Node):
        self.node = node
        self.app = node.app
        self.conf = node.conf
        self.options = node.options
        self.jobs = node.jobs
        self.buffer = node.jobs.buffer
        self.active = node.jobs.active
        self.throttled = node.jobs.throttled
        self.consumer = node.consumer
        self.settler = node.settler
        self.children = node.children
        self.buckets: dict[str, TokenBucket | None] = {}  #: per task name; None: no limit
        #: Tasks whose time limits this node's pool cannot apply (said once in the log).
        self.unlimited: set[str] = set()

    # -- how much to reserve -----------------------------------------------------------------

    @property
    def prefetch_limit(self) -> int:
        return max(1, self.options.concurrency * self.options.prefetch_multiplier)

    def has_capacity(self) -> bool:
        return len(self.buffer) + len(self.active) < self.prefetch_limit

    def wanted(self, now: float) -> int:
        """How many messages to reserve now (0: none)."""
        limit = self.prefetch_limit
        wanted = limit - len(self.buffer) - len(self.active)
        if wanted > 0 and self.active and self._busy_for_long(now):
            # a long task runs here: take only what idle children start now, leave the rest
            # to other nodes (see release_hostages)
            wanted = min(wanted, len(self.children.idle()) + self.children.growth_room() -
                         len(self.buffer))
        # Batch: wait until a good chunk is free unless children would go idle.
        if wanted <= 0 or (wanted < limit // 2 and self.buffer):
            return 0
        return wanted

    def _busy_for_long(self, now: float) -> bool:
        """Whether a task here has been running longer than worker_prefetch_timeout."""
        limit = self.conf.worker_prefetch_timeout
        return any(now - job.started > limit for job in self.active.values())

    def release_hostages(self, now: float) -> None:
        """Prefetched messages that wait behind long tasks go back to their queue, so an idle
        node runs them instead of them waiting here for a child (celery#2994, #6500)."""
        if now - self.buffer[0].due < self.conf.worker_prefetch_timeout or \
                any(self.children.idle()) or self.children.growth_room() or \
                not self._busy_for_long(now):
            return
        log.info("Every child is busy with a long task: returning %d prefetched message(s) "
                 "to their queues for other nodes", len(self.buffer))
        self.consumer.batch.requeues += [job.delivery.id for job in self.buffer]
        self.buffer.clear()

    def deadlines(self, now: float) -> list[float]:
        """When held work may move: an ETA comes, a token comes, or prefetched tasks stuck
        behind long ones are due to be handed back (release_hostages)."""
        scheduled = self.jobs.scheduled
        deadlines = [now + max(0.0, scheduled[0][0] - time.time())] if scheduled else []
        if not (self.buffer or self.throttled):
            return deadlines
        if any(self.children.idle()):
            deadlines.append(now + self._rate_wait())
        elif self.buffer and self.active:
            oldest = min(job.started for job in self.active.values())
            due = max(self.buffer[0].due, oldest) + self.conf.worker_prefetch_timeout
            if due > now:  # (once past, only a child finishing changes anything: no spin)
                deadlines.append(due)
        return deadlines

    # -- receiving ---------------------------------------------------------------------------

    def receive(self, delivery: Delivery) -> None:
        """A reserved message: a job in the buffer or the ETA heap, or a dead letter.

        Whatever goes wrong while receiving one delivery costs only that delivery: it is
        moved to the dead-letter queue with the reason, and the node carries on."""
        try:
            self._receive(delivery)
        except Exception as exc:
            log.exception("Could not receive message %.300r", delivery.id)
            self.consumer.dead_letter(delivery, f"could not be received: {_describe(exc)}")

    def _receive(self, delivery: Delivery) -> None:
        try:
            msg = codec.decode(delivery.body, self.conf.worker_max_message_size)
        except MessageDecodeError as exc:
            self.consumer.dead_letter(delivery, f"undecodable message: {exc.one_line()}")
            return
        task = self.app.tasks.get(msg.task)
        if task is None:
            self._unknown_task(delivery, msg)
            return
        options = msg.options
        job = Job(delivery, msg, task, time.monotonic(),
                  acks_late=first(options.get("acks_late"), task.acks_late),
                  ignore_result=first(options.get("ignore_result"), task.ignore_result))
        job.due = job.received
        log.info("Task %s received", job.label)
        self.node.emit("received", job)
        if msg.eta is not None and msg.eta > time.time():
            self.jobs.hold_until(job, msg.eta)
        else:
            self.buffer.append(job)

    def _unknown_task(self, delivery: Delivery, msg: TaskMessage) -> None:
        registered = ", ".join(sorted(self.app.tasks)) or "none"
        reason = (f"unknown task {msg.task!r} (id {msg.id}); this node has: {registered}. "
                  "Likely cause: the sender runs other code than this node, or the module "
                  "defining the task is not imported by the worker (add it to include=[...])")
        self.consumer.dead_letter(delivery, reason)
        exc = NotRegistered(f"unknown task {msg.task!r}: no node consuming {delivery.queue!r} "
                            "has it registered", "see the dead-letter queue fleet.dead")
        self.consumer.store_meta(exception_meta(msg.id, states.FAILURE, exc, None,
                                                task=msg.task, node=self.node.name))

    # -- dispatching -------------------------------------------------------------------------

    def dispatch(self) -> None:
        """Hand buffered (and rate-held) jobs to idle children, one task per child."""
        if not (self.buffer or self.throttled) or self.node.state == COLD:
            return
        idle = self.children.idle()
        if not idle:
            return
        if self.throttled:
            self._dispatch_throttled(idle)
        buffer = self.buffer
        postponed = []
        while idle and buffer:
            job = buffer.popleft()
            try:
                if self.refuse(job):
                    continue
                bucket = self._bucket(job.task)
                if bucket is not None and (job.task.name in self.throttled or
                                           not bucket.take()):
                    if not self._throttle(job, bucket):
                        postponed.append(job)
                    continue
                self.start(job, idle[-1])
            except Exception as exc:
                self.drop(job, exc)
                continue
            idle.pop()
        buffer.extendleft(reversed(postponed))

    def drop(self, job: Job, exc: Exception) -> None:
        """A job that failed before it could start (a bad value the checks let through):
        dead-lettered with the reason; the node carries on. One already handed to its child
        is left to the child's supervision (which settles it when the child ends)."""
        log.exception("Could not start %s", job.label)
        if job.started is None:
            self.consumer.dead_letter(job.delivery, f"could not be started: {_describe(exc)}")

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
                job = waiting[0]
                try:
                    if self.refuse(job):
                        waiting.popleft()
                        continue
                    if bucket is not None and not bucket.take():
                        break
                    waiting.popleft()
                    self.start(job, idle[-1])
                except Exception as exc:
                    if waiting and waiting[0] is job:
                        waiting.popleft()
                    self.drop(job, exc)
                    continue
                idle.pop()
            if not waiting:
                del self.throttled[name]

    def refuse(self, job: Job) -> bool:
        """Revoked or expired tasks are not run: REVOKED result, message acked."""
        msg = job.message
        if msg.id in self.jobs.revoked:
            reason = "revoked"
            text = f"task {msg.id} was revoked before it started"
        elif msg.expires is not None and msg.expires < time.time():
            reason = "expired"
            text = f"task {msg.id} expired at {_utc(msg.expires)} before it started"
        else:
            return False
        log.info("Task %s %s: not running it", job.label, reason)
        self.settler.fail(job, TaskRevokedError(text), states.REVOKED, reason=reason)
        return True

    def refuse_held(self, ids: Iterable[str]) -> list[str]:
        """Settle revoked tasks this node holds but has not started (prefetched or waiting for
        their ETA) now, as REVOKED, instead of when they would have been due."""
        jobs = self.jobs.take_held(ids)
        for job in jobs:
            self.refuse(job)
        return [job.message.id for job in jobs]

    def start(self, job: Job, child: Child) -> None:
        """Run `job` in `child` (idle): its time limits start now. What can fail (a bad
        value) fails before anything changes."""
        msg = job.message
        now = time.monotonic()
        soft, hard = time_limits(job, self.options, self.conf)
        if (soft or hard) and not self.children.pool.can_signal:
            self._unenforceable(job, soft, hard)
            soft = hard = None
        soft_deadline = now + soft if soft else None
        hard_deadline = now + hard if hard else None
        track = first(msg.options.get("track_started"), job.task.track_started)
        job.child, child.job, job.started = child, job, now
        self.active[job.delivery.id] = job
        job.soft_limit, job.hard_limit = soft, hard
        job.soft_deadline, job.hard_deadline = soft_deadline, hard_deadline
        delivery = job.delivery
        header = {"delivery": {"queue": delivery.queue, "priority": delivery.priority,
                               "redelivered": delivery.redelivered}}
        if self.options.send_events:  # (so update_state sends task-updated events too)
            header["events"] = True
        self.children.pool.send(child, header, delivery.body)
        self.node.emit("started", job)
        if not job.acks_late:
            self.consumer.batch.started.append(delivery.id)
        if track and not job.ignore_result:
            self.consumer.store_meta({"id": msg.id, "state": states.STARTED, "result": None,
                                      "task": msg.task, "node": self.node.name,
                                      "pid": child.pid, "started_at": time.time()})

    def _unenforceable(self, job: Job, soft: float | None, hard: float | None) -> None:
        """A task asks for time limits (its own, or its call's) in a pool that cannot apply
        them (solo, threads): it runs without, and the log says so once per task."""
        name = job.task.name
        if name not in self.unlimited:
            self.unlimited.add(name)
            log.warning("Task %s asks for time limits (soft %s, hard %s) that the %s pool "
                        "cannot apply (its tasks run on threads of the main process): it runs "
                        "without them here; run it on a --pool prefork node to apply them",
                        name, soft, hard, self.options.pool)

    # -- rate limits -------------------------------------------------------------------------

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


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {' '.join(str(exc).split())[:500]}"


def _utc(epoch: float) -> str:
    """Epoch seconds as ISO 8601 in UTC, to the millisecond."""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds")
