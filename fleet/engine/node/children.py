"""Child supervision: the node's pool of children, from fork to reaping.

It spawns children into their slots (`fleet.engine.pool` does the forking and the pipes;
in the solo and threads pools `fleet.engine.threadpool` starts threads of the main process
instead, behind the same interface), reads their outcomes and hands them to the settler,
reaps them, and replaces them. A child that does not come up counts as a boot failure:
before the node is ready, a few in a row stop the node (an app that cannot boot must not
respawn forever); afterwards a replacement is retried with backoff, never given up, so
recycling cannot wedge a node. It enforces the time limits of running tasks (soft: SIGUSR1
into the task; hard: the child's whole process group is terminated and a new child takes
the slot), and grows and shrinks the pool (TTIN, TTOU, remote pool_grow/pool_shrink, the
autoscaler). What the solo and threads pools cannot do is refused (fleet.engine.pools).
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import time
from typing import TYPE_CHECKING, Any

from fleet.engine.node.jobs import COLD, RUNNING, first
from fleet.engine.pool import Child, ChildSettings, Pool
from fleet.engine.pools import SOLO, in_process
from fleet.exceptions import TimeLimitExceeded
from fleet.operator_errors import FleetError
from fleet.signals import describe_wait_status

if TYPE_CHECKING:
    from collections.abc import Iterable

    from fleet.engine.node.jobs import Job
    from fleet.engine.worker import Node

log = logging.getLogger("fleet.worker")

MAX_BOOT_FAILURES = 5
#: The fewest children worker_max_concurrency allows by default (else 4 x the CPU count).
DEFAULT_MOST = 64
#: A child that fails to come up after the node is ready is retried with this backoff
#: (doubling from the first to the last), never given up: recycling must not wedge a node.
RESPAWN_BACKOFF = (0.1, 10.0)
#: How long a node's exit waits for its killed children to be reaped.
EXIT_REAP_TIMEOUT = 2.0

HARD, SOFT = "hard", "soft"


def time_limits(job: Job, options: Any, conf: Any) -> tuple[float | None, float | None]:
    """(soft, hard) time limits of `job` in seconds: from its message, else its task, else
    the node's options, else the app's settings; None or 0 is no limit."""
    msg, task = job.message, job.task
    soft = first(msg.options.get("soft_time_limit"), task.soft_time_limit,
                 options.soft_time_limit, conf.task_soft_time_limit)
    hard = first(msg.options.get("time_limit"), task.time_limit, options.time_limit,
                 conf.task_time_limit)
    return soft, hard


def limit_reached(job: Job, now: float) -> str | None:
    """HARD when `job` is past its hard limit, SOFT when past its soft limit and not told
    yet, else None."""
    if job.hard_deadline is not None and now >= job.hard_deadline:
        return HARD
    if job.soft_deadline is not None and now >= job.soft_deadline and not job.soft_sent:
        return SOFT
    return None


def max_concurrency(conf: Any) -> int:
    """`worker_max_concurrency`, or its default: the larger of 64 and 4 x the CPU count."""
    return conf.worker_max_concurrency or max(DEFAULT_MOST, 4 * (os.cpu_count() or 1))


def respawn_delay(failures: int) -> float:
    """Seconds before the next start after `failures` failed starts in a row."""
    first_delay, most = RESPAWN_BACKOFF
    return min(most, first_delay * 2 ** (failures - 1))


class Children:
    """The node's children: spawn, outcomes, reaping, boot failures, limits, size."""

    def __init__(self, node: Node):
        self.node = node
        self.options = node.options
        self.conf = node.conf
        self.active = node.jobs.active
        self.settler = node.settler
        self.pool: Pool | None = None
        self.autoscaler: Any = None  #: an `Autoscaler` when autoscaling is on
        self.boot_failures = 0  #: children in a row that did not come up
        self.spawn_not_before = 0.0  #: backoff after a failed start (monotonic), or 0

    def start(self) -> None:
        """Make the pool and start its first children (threads in solo and threads)."""
        self.pool = self._make_pool()
        shared = self.pool.fileno()  # a thread pool's outcomes come through one pipe
        if shared is not None:
            self.node.selector.register(shared, selectors.EVENT_READ, self._on_outcomes)
        for slot in self.pool.free_slots():
            self._spawn(slot)

    def _make_pool(self) -> Any:
        kind = self.options.pool
        if in_process(kind):
            from fleet.engine.threadpool import ThreadPool

            return ThreadPool(self._settings(), self.options.concurrency, kind)
        return Pool(self._settings(), self.options.concurrency)

    def describe(self) -> str:
        """'2 children', '4 threads', '1 thread (solo)': the pool in a few words."""
        size = len(self.pool.children) if self.pool else self.options.concurrency
        if not in_process(self.options.pool):
            return f"{size} children"
        noun = "thread" if size == 1 else "threads"
        return f"{size} {noun} (solo)" if self.options.pool == SOLO else f"{size} {noun}"

    def _settings(self) -> ChildSettings:
        options = self.options
        return ChildSettings(
            app=self.node.app, nodename=self.node.name, loglevel=options.loglevel,
            logfile=options.logfile, max_tasks=options.max_tasks_per_child,
            max_memory_kib=options.max_memory_per_child, after_fork=self.node.after_fork)

    def _spawn(self, slot: int) -> None:
        try:
            child = self.pool.spawn(slot)
        except OSError as exc:
            self._boot_failed(None, f"could not be forked ({exc})")
            return
        if child.result_fd >= 0:
            self.node.selector.register(child.result_fd, selectors.EVENT_READ,
                                        lambda: self._on_readable(child))

    def fill(self) -> None:
        """Start children in the free slots (not while stopping or backing off)."""
        if self.node.state != RUNNING or time.monotonic() < self.spawn_not_before:
            return
        for slot in self.pool.free_slots():
            self._spawn(slot)
            if self.spawn_not_before:  # that one failed: the others wait for the backoff
                return

    def idle(self) -> list[Child]:
        return [child for child in self.pool.children.values() if child.idle] if self.pool \
            else []

    def deadlines(self) -> list[float]:
        """When the loop must look again: time limits, KILL after TERM, respawn backoff."""
        deadlines = [d for job in self.active.values()
                     for d in (None if job.soft_sent else job.soft_deadline, job.hard_deadline)
                     if d is not None]  # (a soft limit already signalled is no deadline)
        if self.pool is not None and self.pool.terminating:
            deadlines += self.pool.terminating.values()
        if self.spawn_not_before:
            deadlines.append(self.spawn_not_before)
        return deadlines

    # -- outcomes ----------------------------------------------------------------------------

    def _on_readable(self, child: Child) -> None:
        frames, eof = self.pool.read(child)
        for header, payload in frames:
            self._on_frame(child, header, payload)
        if eof:
            self._forget_pipe(child)

    def _on_outcomes(self) -> None:
        """What the threads of a solo or threads pool posted: outcomes, then exits."""
        exited = False
        for child, header, payload in self.pool.collect():
            if header is None:
                exited = True
            else:
                self._on_frame(child, header, payload)
        if exited:
            self.reap()

    def _on_frame(self, child: Child, header: dict, payload: bytes) -> None:
        if header.get("t") == "up":
            child.up = True
            self.boot_failures = 0
            if not self.node.ready and all(c.up for c in self.pool.children.values()):
                self.node.become_ready()
            return
        job = child.job
        if job is None or header.get("id") != job.message.id:
            return  # the job was already settled (hard limit, cold shutdown)
        child.job = None
        child.tasks_done += 1
        del self.active[job.delivery.id]
        if header.get("retiring"):
            log.info("%s %s: replacing it", child.label, header["retiring"])
            child.retiring = header["retiring"]
        self.settler.settle(job, header, payload)
        if child.retiring or self.node.state != RUNNING:
            self.pool.retire(child)
            self.fill()  # the replacement starts while this one exits

    def _forget_pipe(self, child: Child) -> None:
        if child.result_fd >= 0:
            with contextlib.suppress(KeyError, ValueError):
                self.node.selector.unregister(child.result_fd)
            self.pool.close_result_pipe(child)

    # -- reaping and boot failures -----------------------------------------------------------

    def reap(self) -> None:
        """Collect exited children (SIGCHLD): settle their jobs, count failed starts, and
        start replacements."""
        for child, status in self.pool.reap():
            if child.result_fd >= 0:
                self._on_readable(child)  # an outcome written just before exiting
            self._forget_pipe(child)
            if child.job is not None:
                job, child.job = child.job, None
                self.active.pop(job.delivery.id, None)
                self.settler.lost(job, child.pid, status)
            elif not child.up and self.node.state == RUNNING:
                self._boot_failed(child, describe_wait_status(status))
            elif not (child.retiring or child.killed_for or self.node.state != RUNNING):
                log.warning("%s %s while idle: replacing it", child.label,
                            describe_wait_status(status))
        self.fill()

    def _boot_failed(self, child: Child | None, how: str) -> None:
        """A new child did not come up. Before the node is ready that is a boot error (fail
        fast after a few); afterwards (recycling, a crash) it is retried with backoff for as
        long as it takes, so the node never ends up wedged with an empty slot."""
        self.boot_failures += 1
        which = child.label if child else "A new child"
        if not self.node.ready and self.boot_failures >= MAX_BOOT_FAILURES:
            log.error("%s %s before it was ready", which, how)
            log.critical("Children keep dying at start (%d in a row): stopping the node. "
                         "See the errors above.", self.boot_failures)
            self.node.exit_code = 1
            self.node.shutdown.begin(COLD)
            return
        delay = respawn_delay(self.boot_failures)
        self.spawn_not_before = time.monotonic() + delay
        log.error("%s %s before it was ready; starting a replacement in %.1fs (attempt %d)",
                  which, how, delay, self.boot_failures + 1)

    def check_boot_timeouts(self, now: float) -> None:
        """Kill children that did not report ready within worker_proc_alive_timeout (the
        reaper then counts them as failed starts and retries)."""
        if self.pool is None:
            return
        limit = self.conf.worker_proc_alive_timeout
        for child in list(self.pool.children.values()):
            if not child.up and not child.killed_for and now - child.born > limit:
                log.error("%s did not report ready within %gs: killing it", child.label,
                          limit)
                self.pool.kill_group(child, signal.SIGKILL, "no ready report")

    # -- time limits -------------------------------------------------------------------------

    def enforce_time_limits(self, now: float) -> None:
        for job in list(self.active.values()):
            reached = limit_reached(job, now)
            if reached == HARD:
                self._hard_limit(job)
            elif reached == SOFT:
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
        self.fill()
        self.settler.fail(job, TimeLimitExceeded(job.hard_limit))

    def signal_tasks(self, ids: Iterable[str], signum: int) -> list[Job]:
        """Send `signum` to the children running these task ids (remote terminate); the
        jobs are marked, so their end is settled as terminated. A FleetError when one of
        them runs in a pool whose tasks cannot be interrupted (solo, threads)."""
        wanted = set(ids)
        running = [job for job in self.active.values()
                   if job.message.id in wanted and job.child is not None]
        if running and not self.pool.can_signal:
            kind = self.options.pool
            raise FleetError(
                f"cannot terminate {', '.join(job.message.id for job in running)}: in the "
                f"{kind} pool a task runs on a thread of the node's main process, which "
                "nothing can interrupt; it stays revoked and runs to its end",
                "run tasks that must be stoppable on a --pool prefork node")
        for job in running:
            job.terminate = signum
            self.pool.kill(job.child, signum)
        return running

    # -- size --------------------------------------------------------------------------------

    def growth_room(self) -> int:
        """Children the autoscaler may still add."""
        if self.autoscaler is None:
            return 0
        return max(0, self.autoscaler.maximum - self.options.concurrency)

    def check_resizable(self, why: str) -> None:
        """A FleetError when the pool cannot change size (solo runs one task at a time)."""
        if self.options.pool == SOLO:
            raise FleetError(f"{why} refused: the solo pool runs one task at a time",
                             "start the node with --pool threads or prefork to run several")

    @property
    def most(self) -> int:
        """The most children the pool may have (`worker_max_concurrency`)."""
        return max_concurrency(self.conf)

    def check_most(self, target: int, what: str) -> None:
        """Refuse (FleetError) a pool of `target` children over `worker_max_concurrency`."""
        if target > self.most:
            raise FleetError(
                f"{what} refused: the pool would have {target} children, over "
                f"worker_max_concurrency ({self.most})",
                "raise worker_max_concurrency (fleet.toml or FLEET_WORKER_MAX_CONCURRENCY) if "
                "this machine can run that many")

    def grow(self, n: int = 1, why: str = "pool_grow") -> None:
        """Add `n` children (TTIN, remote pool_grow). A size over worker_max_concurrency, or
        with autoscale on over its maximum, is refused with a FleetError that says so."""
        self.check_resizable(why)
        self.check_most(self.options.concurrency + n, why)
        if self.autoscaler is not None:
            self.autoscaler.check(self.options.concurrency + n, why)
        self.resize(self.options.concurrency + n)

    def shrink(self, n: int = 1, why: str = "pool_shrink") -> None:
        """Remove `n` children (TTOU, remote pool_shrink); busy ones finish their task
        first. Never below one child, or below the autoscale minimum (refused)."""
        self.check_resizable(why)
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
            self.fill()
            return
        log.info("Pool shrinks to %d children", target)
        for child in self.pool.children.values():
            if child.slot > target and not child.retiring:
                child.retiring = "pool shrank"
                if child.job is None:
                    self.pool.retire(child)

    def restart_all(self) -> int:
        """Replace every child, busy ones after their task (remote pool_restart)."""
        for child in list(self.pool.children.values()):
            if child.retiring is None:
                child.retiring = "pool restart"
            if child.job is None:
                self.pool.retire(child)
        return len(self.pool.children)

    # -- stopping ----------------------------------------------------------------------------

    def retire_idle(self) -> None:
        """Let every child without a task exit (warm shutdown)."""
        for child in list(self.pool.children.values()) if self.pool else []:
            if child.job is None:
                self.pool.retire(child)

    def stop_all(self, reason: str) -> None:
        """TERM every child's process group, and let none take another task."""
        for child in list(self.pool.children.values()) if self.pool else []:
            self.pool.retire(child)
            self.pool.kill_group(child, signal.SIGTERM, reason)

    def kill_all(self, reason: str) -> None:
        """KILL every child's process group."""
        for child in list(self.pool.children.values()):
            self.pool.kill_group(child, signal.SIGKILL, reason)

    def kill_and_reap(self) -> None:
        """At the node's exit: KILL every child and reap them (for a short while)."""
        self.kill_all("node exit")
        deadline = time.monotonic() + EXIT_REAP_TIMEOUT
        while self.pool.children and time.monotonic() < deadline:
            self.pool.reap()
            time.sleep(0.01)
        shared = self.pool.fileno()
        if shared is not None:
            with contextlib.suppress(KeyError, ValueError):
                self.node.selector.unregister(shared)
        self.pool.close()
