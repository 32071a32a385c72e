"""OS signals: record-only handlers, signal names, and what each signal means to a node.

A handler here does nothing at all in Python: `signal.set_wakeup_fd` makes the interpreter
write the signal number into a pipe the moment the signal arrives (async-signal-safe, in C),
and the main loop reads the pipe with its other file descriptors and acts. No logging, I/O or
process management ever happens inside a handler (gunicorn's deadlocks taught that).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterable

from fleet.errors import UsageError

#: What a node's main process does on each signal.
NODE_ACTIONS: dict[signal.Signals, str] = {
    signal.SIGTERM: "warm shutdown: stop consuming, finish running tasks, return the rest",
    signal.SIGINT: "warm shutdown; a second INT means cold shutdown",
    signal.SIGQUIT: "cold shutdown: stop running tasks now, return acks-late and prefetched ones",
    signal.SIGHUP: "warm restart in place: same pid, code and settings reloaded",
    signal.SIGUSR1: "write every process's stack into the node's log",
    signal.SIGTTIN: "grow the pool by one child",
    signal.SIGTTOU: "shrink the pool by one child",
}


def signal_name(signum: int) -> str:
    """15 -> 'TERM' (without the SIG prefix, as operators type them)."""
    try:
        return signal.Signals(signum).name.removeprefix("SIG")
    except ValueError:
        return str(signum)


def parse_signal(text: str | int) -> signal.Signals:
    """'TERM', 'SIGTERM', 'term', '15', 15 -> signal.SIGTERM; anything else is a UsageError."""
    value = str(text).strip().upper().lstrip("-")
    try:
        if value.isdigit():
            return signal.Signals(int(value))
        return signal.Signals[value if value.startswith("SIG") else "SIG" + value]
    except (KeyError, ValueError):
        raise UsageError(f"unknown signal {text!r}",
                         "use a name like TERM, INT, QUIT, HUP, KILL, USR1 or a number") from None


def describe_wait_status(status: int) -> str:
    """Decode an `os.waitpid` status: 'exited with code 3', 'killed by signal 9 (KILL)'."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        text = f"killed by signal {signum} ({signal_name(signum)})"
        if signum == signal.SIGKILL:
            text += ", perhaps by the kernel's out-of-memory killer"
        return text
    if os.WIFEXITED(status):
        return f"exited with code {os.WEXITSTATUS(status)}"
    return f"stopped with status {status}"


class SignalRecorder:
    """Route signals into a non-blocking pipe; `fileno()` goes into the main loop's selector."""

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._signals: list[int] = []
        self._previous_wakeup = -1

    def fileno(self) -> int:
        return self._read_fd

    def install(self, signals: Iterable[int]) -> None:
        self._previous_wakeup = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        for signum in signals:
            signal.signal(signum, _record_only)
            signal.siginterrupt(signum, False)
            self._signals.append(signum)

    def drain(self) -> list[int]:
        """The signals received since the last drain, in arrival order."""
        received = []
        while True:
            try:
                data = os.read(self._read_fd, 512)
            except BlockingIOError:
                break
            if not data:
                break
            received.extend(data)
        return received

    def restore(self) -> None:
        """Back to default handlers (used in forked children and before exec)."""
        for signum in self._signals:
            signal.signal(signum, signal.SIG_DFL)
        self._signals.clear()
        signal.set_wakeup_fd(self._previous_wakeup if self._previous_wakeup >= 0 else -1)

    def close(self) -> None:
        for fd in (self._read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)


def _record_only(signum: int, frame: object) -> None:
    """The Python-level handler: nothing to do, the wakeup fd already recorded the signal."""


def block_signals(signals: Iterable[int]) -> set[int]:
    """Block signals around fork, so a child never runs the parent's handlers."""
    return signal.pthread_sigmask(signal.SIG_BLOCK, signals)


def unblock_signals(previous: set[int]) -> None:
    signal.pthread_sigmask(signal.SIG_SETMASK, previous)
