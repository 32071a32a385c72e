"""The solo and threads pools: tasks run on threads of the node's main process, never forked.

The node's child supervision (fleet.engine.node.children) drives this pool as it drives the
prefork one (fleet.engine.pool): a "child" here is a thread in a slot, with an inbox
(`queue.SimpleQueue`) instead of a task pipe. The main loop keeps the main thread, so it goes
on heartbeating, answering remote control and settling while tasks run. A thread takes one
task at a time from its inbox, runs it with `fleet.engine.execute.execute` (as a child does)
and posts the outcome, in the frame shape a child writes, on one queue shared by every thread;
a byte on the pool's wake-up pipe (`fileno()`, in the loop's selector) says it is there.

A thread says "up" when it starts and posts an exit record when it ends (its inbox got None:
retired, or the node stops), so the supervisor settles, reaps and replaces threads as it does
children; `reap` never calls waitpid, which would steal the exit status of processes a task
starts. Nothing can interrupt a thread from outside: signals to a thread are no-ops, and
SIGKILL means "abandon it" (cold shutdown, the node's exit): it is forgotten at once and
ends with the process. See fleet.engine.pools for what that means for limits.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import queue
import signal
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from fleet.engine import hooks
from fleet.engine import message as codec
from fleet.engine.execute import execute
from fleet.engine.pool import Child

if TYPE_CHECKING:
    from fleet.engine.pool import ChildSettings

log = logging.getLogger("fleet.pool")

#: The wait status a thread that crashed outside its task reports (as a child exiting 70).
CRASHED = 70 << 8


@dataclass
class TaskThread(Child):
    """A slot's thread: a `Child` to the supervisor, whose pid is the main process's."""

    inbox: queue.SimpleQueue = field(default_factory=queue.SimpleQueue)
    thread: threading.Thread | None = None
    key: int = 0  #: its key in `ThreadPool.children` (the pid is the same for every thread)
    open: bool = True  #: takes tasks (False once retired)
    exited: bool = False  #: its exit record was collected
    status: int = 0  #: 0, or CRASHED

    @property
    def idle(self) -> bool:
        return self.up and self.job is None and self.retiring is None and self.open

    @property
    def label(self) -> str:
        return f"Thread {self.slot}"


class ThreadPool:
    """Threads of this process in slots 1..concurrency, with the prefork pool's interface."""

    can_signal = False  #: a running task cannot be interrupted (time limits, terminate)

    def __init__(self, settings: ChildSettings, concurrency: int, implementation: str):
        self.settings = settings
        self.concurrency = concurrency
        self.implementation = implementation
        self.children: dict[int, TaskThread] = {}  # key -> thread
        self.terminating: dict[int, float] = {}  # (never filled: nothing to escalate)
        self._outcomes: queue.SimpleQueue = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._keys = itertools.count(1)
        self._process_hooks_sent = False

    def fileno(self) -> int:
        """Readable when outcomes are waiting in `collect`."""
        return self._wake_r

    def free_slots(self) -> list[int]:
        used = {child.slot for child in self.children.values()
                if not (child.retiring and child.job is None)}
        return [slot for slot in range(1, self.concurrency + 1) if slot not in used]

    def spawn(self, slot: int) -> TaskThread:
        if not self._process_hooks_sent:  # no child process: this process is the one that
            self._process_hooks_sent = True  # runs tasks, so it gets the hook once (as Celery's
            hooks.worker_process_init.send()  # solo pool does)
        child = TaskThread(slot, os.getpid(), -1, -1, key=next(self._keys))
        child.thread = threading.Thread(target=self._run, args=(child,), daemon=True,
                                        name=f"thread {slot}")
        try:
            child.thread.start()
        except RuntimeError as exc:  # "can't start new thread": as a failed fork
            raise OSError(errno.EAGAIN, str(exc)) from None
        self.children[child.key] = child
        log.debug("Started thread %d", slot)
        return child

    # -- talking to threads -------------------------------------------------------------------

    def send(self, child: TaskThread, header: dict, payload: bytes | str = b"") -> None:
        child.inbox.put((header, payload))

    def collect(self) -> list[tuple[TaskThread, dict | None, bytes]]:
        """The outcomes posted since the last call, in order: (thread, header, payload); a
        None header is the thread's exit record (it is then marked `exited`)."""
        with contextlib.suppress(BlockingIOError):
            while os.read(self._wake_r, 4096):
                pass
        posted = []
        while True:
            try:
                item = self._outcomes.get_nowait()
            except queue.Empty:
                return posted
            if item[1] is None:
                item[0].exited = True
            posted.append(item)

    def retire(self, child: TaskThread) -> None:
        """Let the thread end after its task (None in its inbox)."""
        if child.open:
            child.open = False
            child.inbox.put(None)

    def kill(self, child: TaskThread, signum: int, reason: str | None = None) -> None:
        """Nothing interrupts a thread; SIGKILL abandons it (see the module docstring)."""
        if reason and not child.killed_for:
            child.killed_for = reason
        if signum == signal.SIGKILL and not child.exited:
            self.retire(child)
            child.exited = True
            self._post(child, None)  # the loop reaps it at once, as after a child's SIGCHLD

    kill_group = kill

    def terminate(self, child: TaskThread, grace: float, reason: str) -> None:
        self.kill(child, signal.SIGTERM, reason)
        self.retire(child)

    def escalate(self, now: float) -> None:
        return None

    def reap(self) -> list[tuple[TaskThread, int]]:
        """The threads that ended (their exit record collected) or were abandoned, as
        (thread, wait status); never waitpid: a task's own processes are its business."""
        gone = [child for child in self.children.values() if child.exited]
        for child in gone:
            del self.children[child.key]
        return [(child, child.status) for child in gone]

    def close_result_pipe(self, child: TaskThread) -> None:
        return None

    def pids(self) -> list[int]:
        return [os.getpid()]

    def busy(self) -> list[TaskThread]:
        return [child for child in self.children.values() if child.job is not None]

    def close(self) -> None:
        if self._process_hooks_sent:
            self._process_hooks_sent = False
            hooks.worker_process_shutdown.send(pid=os.getpid(), exitcode=0)
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    # -- the thread side ----------------------------------------------------------------------

    def _post(self, child: TaskThread, header: dict | None, payload: bytes = b"") -> None:
        self._outcomes.put((child, header, payload))
        with contextlib.suppress(BlockingIOError, OSError):  # full: the loop wakes anyway
            os.write(self._wake_w, b"\0")

    def _run(self, child: TaskThread) -> None:
        settings = self.settings
        self._post(child, {"t": "up", "slot": child.slot, "pid": child.pid})
        try:
            while (item := child.inbox.get()) is not None:
                header, body = item
                outcome = execute(settings.app, codec.decode(body), settings.nodename,
                                  header.get("delivery", {}), events=header.get("events", False))
                self._post(child, outcome.header(), (outcome.meta or "").encode())
        except BaseException:  # execute() never raises: this is a bug, not a task failing
            log.exception("Thread %d crashed", child.slot)
            child.status = CRASHED
        finally:
            self._post(child, None)
