"""The prefork pool: child processes that execute tasks, and the pipes to talk to them.

The node's main process forks each child (the app is already imported, so children start in
milliseconds) and keeps two pipes per child: it writes one task at a time into the child's
task pipe, and reads outcomes from the child's result pipe. A child never talks to the broker
for the node; it only runs tasks (a task that sends other tasks opens its own connection).

Frames on both pipes: a 4-byte big-endian length, then a JSON header line, a newline, and an
optional payload (a raw message body going in, an encoded result coming out), so the main
process never re-encodes what it only forwards.

Child lifecycle: the child sends an "up" frame once ready; after each task it may announce it
is retiring (max tasks or max memory reached) and exits; the main process reaps it and forks
a replacement into the same slot (the `%i` index stays stable). Children ignore SIGINT (a
Ctrl-C goes to the main process, which decides) and turn SIGTERM into `Terminated` and
SIGUSR1 into `SoftTimeLimitExceeded` inside the running task; SIGUSR2 dumps their stacks.
They die with the main process (PR_SET_PDEATHSIG).

Each child leads its own process group, so stopping a task (hard time limit, cold shutdown)
also stops whatever the task started: the group gets TERM, then after a short grace KILL
(`terminate` and `escalate`).
"""

from __future__ import annotations

import contextlib
import faulthandler
import gc
import logging
import os
import signal
import struct
import sys
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fleet.engine import hooks
from fleet.engine import message as codec
from fleet.engine.execute import execute

if TYPE_CHECKING:
    from collections.abc import Callable

    from fleet.engine.app import Fleet

log = logging.getLogger("fleet.pool")

_LENGTH = struct.Struct("!I")
MAX_FRAME = 512 * 1024 * 1024

#: Signals blocked around fork: the child must not run the parent's handlers.
FORK_BLOCKED = {signal.SIGTERM, signal.SIGINT, signal.SIGQUIT, signal.SIGHUP, signal.SIGUSR1,
                signal.SIGUSR2, signal.SIGTTIN, signal.SIGTTOU, signal.SIGCHLD}


def encode_frame(header: dict, payload: bytes | str = b"") -> bytes:
    if isinstance(payload, str):
        payload = payload.encode()
    data = codec.dumps(header).encode() + b"\n" + payload
    return _LENGTH.pack(len(data)) + data


def decode_frame(data: bytes) -> tuple[dict, bytes]:
    head, _, payload = data.partition(b"\n")
    return codec.loads(head), payload


def split_frames(buffer: bytearray) -> list[tuple[dict, bytes]]:
    """Take every complete frame off the front of `buffer`."""
    frames = []
    while len(buffer) >= 4:
        (length,) = _LENGTH.unpack_from(buffer)
        if length > MAX_FRAME:
            raise ValueError(f"frame of {length} bytes is too large")
        if len(buffer) < 4 + length:
            break
        frames.append(decode_frame(bytes(buffer[4:4 + length])))
        del buffer[:4 + length]
    return frames


@dataclass
class ChildSettings:
    """What a child needs to know, fixed when it is forked."""

    app: Fleet
    nodename: str
    loglevel: int
    logfile: str | None
    max_tasks: int | None
    max_memory_kib: int | None
    #: Called in the child right after fork, to close the parent's descriptors.
    after_fork: Callable[[], None] | None = None


@dataclass
class Child:
    slot: int
    pid: int
    task_fd: int
    result_fd: int
    born: float = field(default_factory=time.monotonic)
    up: bool = False
    job: Any = None
    tasks_done: int = 0
    retiring: str | None = None
    buffer: bytearray = field(default_factory=bytearray)
    #: Why the main process killed it (so reaping doesn't call it "lost").
    killed_for: str | None = None

    @property
    def idle(self) -> bool:
        return self.up and self.job is None and self.retiring is None and self.task_fd >= 0

    @property
    def label(self) -> str:
        return f"Child {self.slot} (pid {self.pid})"


class Pool:
    """The main process's view of its children: spawn, dispatch, read, reap.

    The solo and threads pools (fleet.engine.threadpool) have the same interface, so the
    node's child supervision drives either.
    """

    implementation = "prefork"
    can_signal = True  #: a running task can be interrupted (time limits, terminate)

    def __init__(self, settings: ChildSettings, concurrency: int):
        self.settings = settings
        self.concurrency = concurrency
        self.children: dict[int, Child] = {}  # pid -> child
        #: Process groups sent TERM, and when they get KILL (monotonic): see `terminate`.
        self.terminating: dict[int, float] = {}
        from fleet.daemon import libc

        libc()  # looked up once here, so children inherit it instead of each searching

    # -- spawning ---------------------------------------------------------------------------

    def free_slots(self) -> list[int]:
        """Slots without a child, counting a slot whose child is on its way out (retiring
        with no task) as free: its replacement starts without waiting for the exit."""
        used = {child.slot for child in self.children.values()
                if not (child.retiring and child.job is None)}
        return [slot for slot in range(1, self.concurrency + 1) if slot not in used]

    def spawn(self, slot: int) -> Child:
        task_r, task_w = os.pipe2(os.O_CLOEXEC)
        result_r, result_w = os.pipe2(os.O_CLOEXEC)
        _prepare_fork()
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, FORK_BLOCKED)
        parent = os.getpid()
        pid = 0
        try:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child, which exits via os._exit
                os.close(task_w)
                os.close(result_r)
                _child_main(self.settings, slot, task_r, result_w, previous, self, parent)
        except OSError:  # fork failed (EAGAIN, ENOMEM): the caller retries later
            for fd in (task_r, task_w, result_r, result_w):
                os.close(fd)
            raise
        finally:
            if not _in_child(parent):  # (the child restores its mask itself)
                signal.pthread_sigmask(signal.SIG_SETMASK, previous)
        with contextlib.suppress(OSError):  # also done in the child: whichever runs first
            os.setpgid(pid, pid)
        os.close(task_r)
        os.close(result_w)
        os.set_blocking(result_r, False)
        child = Child(slot, pid, task_w, result_r)
        self.children[pid] = child
        log.debug("Started child %d (pid %d)", slot, pid)
        return child

    # -- talking to children ------------------------------------------------------------------

    def send(self, child: Child, header: dict, payload: bytes | str = b"") -> None:
        data = encode_frame(header, payload)
        view = memoryview(data)
        while view:
            written = os.write(child.task_fd, view)
            view = view[written:]

    def read(self, child: Child) -> tuple[list[tuple[dict, bytes]], bool]:
        """Frames available from `child`, and whether its result pipe reached EOF."""
        eof = False
        while True:
            try:
                chunk = os.read(child.result_fd, 1 << 16)
            except BlockingIOError:
                break
            except OSError:
                eof = True
                break
            if not chunk:
                eof = True
                break
            child.buffer += chunk
            if len(chunk) < 1 << 16:
                break
        return split_frames(child.buffer), eof

    def retire(self, child: Child) -> None:
        """Ask an idle child to exit by closing its task pipe (it sees EOF)."""
        if child.task_fd >= 0:
            os.close(child.task_fd)
            child.task_fd = -1

    def kill(self, child: Child, signum: int, reason: str | None = None) -> None:
        if reason and not child.killed_for:
            child.killed_for = reason
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.pid, signum)

    def kill_group(self, child: Child, signum: int, reason: str | None = None) -> None:
        """Signal the child and every process its task started (its process group)."""
        if reason and not child.killed_for:
            child.killed_for = reason
        _signal_group(child.pid, signum)

    def terminate(self, child: Child, grace: float, reason: str) -> None:
        """Stop the child's task and everything it started: TERM to its process group now
        (the task gets `Terminated` and may clean up), KILL after `grace` seconds (see
        `escalate`). Its task pipe is closed, so a child that unwinds in time exits."""
        self.kill_group(child, signal.SIGTERM, reason)
        self.retire(child)
        self.terminating[child.pid] = time.monotonic() + grace

    def escalate(self, now: float) -> None:
        """KILL the process groups whose grace after `terminate` is over.

        The group is killed even if its leader already exited: a grandchild that ignored
        TERM must not outlive the task (pids are allocated in sequence, so the group id is
        not reused within the grace)."""
        for pgid, deadline in list(self.terminating.items()):
            if now >= deadline:
                del self.terminating[pgid]
                _signal_group(pgid, signal.SIGKILL)

    # -- reaping ----------------------------------------------------------------------------

    def reap(self) -> list[tuple[Child, int]]:
        """Collect every exited child (ours) as (child, wait status); close its pipes."""
        exited = []
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            child = self.children.pop(pid, None)
            if child is None:
                continue  # not a pool child (e.g. a grandchild adopted as subreaper)
            self.retire(child)
            exited.append((child, status))
        return exited

    def close_result_pipe(self, child: Child) -> None:
        if child.result_fd >= 0:
            os.close(child.result_fd)
            child.result_fd = -1

    def pids(self) -> list[int]:
        return sorted(self.children)

    def busy(self) -> list[Child]:
        return [child for child in self.children.values() if child.job is not None]

    def fileno(self) -> None:
        """(A thread pool's shared outcome pipe; children each have their own.)"""
        return None

    def close(self) -> None:
        return None


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def _in_child(parent: int) -> bool:
    return os.getpid() != parent


# -- the child side ----------------------------------------------------------------------------

class _ChildState:
    in_task = False


def _raise_in_task(exc_type: type[BaseException]) -> Callable[[int, Any], None]:
    """A child's signal handler that interrupts the running task (and nothing else).

    This is the one deliberate exception to "handlers only record": its whole purpose is to
    raise inside the task's frame, as a soft time limit or a terminate request must.
    """

    def handler(signum: int, frame: Any) -> None:
        if _ChildState.in_task:
            raise exc_type()

    return handler


def _prepare_fork() -> None:
    """Keep the pages a child inherits shared with the main process (idle memory).

    At the first fork every object that exists then (the start-up's modules, the app, the
    executor imported at the top of this module) is moved out of the cyclic collector's
    reach (`gc.freeze`), so no collection in a child (or in the main process) writes into
    the inherited objects' headers, which would copy their pages one by one. Only once:
    freezing again at every respawn would also freeze whatever cyclic garbage the main
    process made meanwhile, for good.
    """
    global _FROZEN
    if not _FROZEN:
        gc.freeze()
        _FROZEN = True


_FROZEN = False


def _child_main(settings: ChildSettings, slot: int, task_fd: int, result_fd: int,
                mask: Any, pool: Pool, parent: int) -> None:  # pragma: no cover - integration
    code = 0
    try:
        _child_setup(settings, slot, pool, task_fd, result_fd, parent)
        signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        _child_loop(settings, slot, task_fd, result_fd)
    except BaseException:
        logging.getLogger("fleet.pool").exception("Child %d crashed", slot)
        code = 70
    finally:
        hooks.worker_process_shutdown.send(pid=os.getpid(), exitcode=code)
        logging.shutdown()
        os._exit(code)


def _child_setup(settings: ChildSettings, slot: int, pool: Pool, task_fd: int,
                 result_fd: int, parent: int) -> None:
    from fleet.daemon import set_parent_death_signal
    from fleet.engine.log import setup_logging  # (imported by the main process already)

    with contextlib.suppress(OSError):
        os.setpgid(0, 0)  # lead a group of our own: a hard limit stops the task's processes
    signal.set_wakeup_fd(-1)
    for child in pool.children.values():  # the siblings' pipes belong to the main process
        for fd in (child.task_fd, child.result_fd):
            if fd >= 0 and fd not in (task_fd, result_fd):
                with contextlib.suppress(OSError):
                    os.close(fd)
    pool.children.clear()
    if settings.after_fork:
        settings.after_fork()
    for signum in (signal.SIGHUP, signal.SIGQUIT, signal.SIGCHLD):
        signal.signal(signum, signal.SIG_DFL)
    for signum in (signal.SIGTTIN, signal.SIGTTOU):  # not the terminal's foreground group
        signal.signal(signum, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGQUIT, signal.SIG_IGN)
    from fleet.exceptions import SoftTimeLimitExceeded, Terminated

    signal.signal(signal.SIGTERM, _raise_in_task(Terminated))
    signal.signal(signal.SIGUSR1, _raise_in_task(SoftTimeLimitExceeded))
    set_parent_death_signal(signal.SIGKILL)
    if os.getppid() != parent:  # the main process died before PDEATHSIG was armed
        os._exit(0)  # (compare pids, not with 1: in a container the main process IS pid 1)
    _set_title(f"fleet worker {settings.nodename} child {slot}")
    log_fd = setup_logging(settings.nodename, f"child {slot}", settings.loglevel,
                           settings.logfile, index=slot)
    faulthandler.register(signal.SIGUSR2, file=log_fd if log_fd is not None else sys.stderr,
                          all_threads=True, chain=False)
    hooks.worker_process_init.send()


def _child_loop(settings: ChildSettings, slot: int, task_fd: int, result_fd: int) -> None:
    _write_all(result_fd, encode_frame({"t": "up", "slot": slot, "pid": os.getpid()}))
    reader = _FrameReader(task_fd)
    done = 0
    while True:
        frame = reader.next()
        if frame is None:
            return  # the main process closed our task pipe: exit quietly
        header, body = frame
        msg = codec.decode(body, None)  # (its size was checked by the node: any limit)
        _ChildState.in_task = True
        try:
            outcome = execute(settings.app, msg, settings.nodename, header.get("delivery", {}),
                              events=header.get("events", False))
        finally:
            _ChildState.in_task = False
        done += 1
        retiring = _retire_reason(settings, done)
        reply = outcome.header()
        if retiring:
            reply["retiring"] = retiring
        _write_all(result_fd, encode_frame(reply, outcome.meta or b""))
        if retiring:
            return


def _retire_reason(settings: ChildSettings, done: int) -> str | None:
    if settings.max_tasks and done >= settings.max_tasks:
        return f"reached its limit of {settings.max_tasks} tasks"
    if settings.max_memory_kib:
        rss_kib = _rss_kib()
        if rss_kib is not None and rss_kib > settings.max_memory_kib:
            return (f"uses {rss_kib} KiB of resident memory, over the limit of "
                    f"{settings.max_memory_kib} KiB")
    return None


def _rss_kib() -> int | None:
    """Current resident memory of this process in KiB (not the peak: that never goes down)."""
    try:
        with open("/proc/self/statm") as statm:
            pages = int(statm.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") // 1024
    except (OSError, ValueError, IndexError):
        return None


class _FrameReader:
    def __init__(self, fd: int):
        self.fd = fd
        self.buffer = bytearray()

    def next(self) -> tuple[dict, bytes] | None:
        while True:
            frames = split_frames_one(self.buffer)
            if frames is not None:
                return frames
            try:
                chunk = os.read(self.fd, 1 << 16)
            except InterruptedError:  # pragma: no cover - PEP 475 retries for us
                continue
            if not chunk:
                return None
            self.buffer += chunk


def split_frames_one(buffer: bytearray) -> tuple[dict, bytes] | None:
    if len(buffer) < 4:
        return None
    (length,) = _LENGTH.unpack_from(buffer)
    if len(buffer) < 4 + length:
        return None
    frame = decode_frame(bytes(buffer[4:4 + length]))
    del buffer[:4 + length]
    return frame


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _set_title(title: str) -> None:
    try:
        import setproctitle
    except ImportError:  # pragma: no cover - a declared dependency
        return
    setproctitle.setproctitle(title)
