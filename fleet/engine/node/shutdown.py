"""Stopping a node: warm and cold shutdown, and restarting it in place.

Warm (TERM, the first INT, HUP, remote shutdown): stop consuming, send every message not
started yet back to its queue, let idle children exit and running tasks finish. Cold (QUIT,
a second INT, children that cannot boot): also stop the running tasks at once (TERM to each
child's process group, KILL after worker_shutdown_grace); an acks-late task goes back to
its queue, another is marked failed. Either way the loop ends (STOPPED) once no child is
left, logging what it still waits for every PROGRESS_INTERVAL seconds.

A warm restart (HUP) is a warm shutdown followed by `restart_in_place`: the same command
replaces this process (same pid, so pid files and supervisors never see it stop).
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import TYPE_CHECKING

from fleet.engine.node.jobs import COLD, RUNNING, STOPPED, WARM
from fleet.exceptions import WorkerLostError

if TYPE_CHECKING:
    from fleet.engine.worker import Node

log = logging.getLogger("fleet.worker")

PROGRESS_INTERVAL = 5.0


class Shutdown:
    """Takes a node from RUNNING through WARM or COLD to STOPPED."""

    def __init__(self, node: Node):
        self.node = node
        self.jobs = node.jobs
        self.cold_deadline: float | None = None  #: when the children get KILL (monotonic)
        self.next_progress = 0.0
        self.reason = ""  #: what asked for the shutdown: "TERM", "second INT", ...

    def begin(self, how: str, why: str = "") -> None:
        """Start a WARM or COLD shutdown (`why`: what asked for it, for the log)."""
        node = self.node
        if how == WARM and node.state != RUNNING:
            log.info("Already in %s; ignoring %s", node.state, why or "the request")
            return
        if how == COLD and node.state in (COLD, STOPPED):
            return
        node.state = how
        self.reason = why
        log.warning("%s%s", how.capitalize(), f" ({why})" if why else "")
        node.emit("shutdown", how)
        self.return_unstarted()
        active = self.jobs.active
        if how == WARM:
            node.children.retire_idle()
            if active:
                log.warning("Waiting for %d running task(s) to finish: %s", len(active),
                            ", ".join(job.label for job in active.values()))
        else:
            self._stop_running_tasks()
        self.next_progress = time.monotonic() + PROGRESS_INTERVAL

    def return_unstarted(self) -> None:
        """Send prefetched, ETA-held and rate-limited messages back to their queues."""
        jobs = self.jobs.take_unstarted()
        if jobs:
            log.info("Returning %d unstarted message(s) to their queues", len(jobs))
            self.node.consumer.batch.requeues += [job.delivery.id for job in jobs]

    def _stop_running_tasks(self) -> None:
        node = self.node
        for job in list(self.jobs.active.values()):
            job.child.job = None
            self.jobs.active.pop(job.delivery.id)
            if job.acks_late:
                log.warning("Cold shutdown: stopping %s; acks-late, so it goes back to its "
                            "queue", job.label)
                node.consumer.batch.requeues.append(job.delivery.id)
            else:
                log.warning("Cold shutdown: stopping %s (marked failed)", job.label)
                node.settler.fail(job, WorkerLostError(f"worker lost: node {node.name} shut "
                                                       "down cold while the task ran"))
        node.children.stop_all("cold shutdown")
        self.cold_deadline = time.monotonic() + node.conf.worker_shutdown_grace

    def progress(self, now: float) -> None:
        """Called every loop turn while stopping: STOPPED once no child is left; KILL the
        children at the cold deadline; say now and then what it still waits for."""
        node = self.node
        pool = node.children.pool
        if pool is None or not pool.children:
            node.state = STOPPED
            return
        if self.cold_deadline is not None and now >= self.cold_deadline:
            node.children.kill_all("cold shutdown")
            self.cold_deadline = None
        active = self.jobs.active
        if now >= self.next_progress and active:
            self.next_progress = now + PROGRESS_INTERVAL
            log.warning("Still waiting for %d running task(s): %s", len(active),
                        ", ".join(job.label for job in active.values()))

    def deadlines(self, now: float) -> list[float]:
        """While stopping: look again every half second, and at the cold deadline."""
        if self.node.state == RUNNING:
            return []
        return [now + 0.5] if self.cold_deadline is None else [now + 0.5, self.cold_deadline]


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
