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

from fleet.operator_errors import UsageError

SIGNAL_EXAMPLES = "use a name such as TERM, KILL, HUP, INT, QUIT or USR1, or a number such as 9"

def signal_name(signum: int) -> str:
    """15 -> 'TERM' (without the SIG prefix, as operators type them)."""
    try:
        return signal.Signals(signum).name.removeprefix("SIG")
    except ValueError:
        return str(signum)


def parse_signal(text: str | int, given_as: str | None = None,
                 hint: str = SIGNAL_EXAMPLES) -> signal.Signals:
    """'TERM', 'SIGTERM', 'term', '-TERM', '15' or 15 -> signal.SIGTERM.

    The only place fleet turns an operator's signal into a number (multi's `-TERM` and
    `--signal`, `fleet control terminate`, `revoke(terminate=True, signal=...)`). Anything
    else is a UsageError naming what was given (`given_as`, e.g. '--signal=FOO') with `hint`.
    """
    value = str(text).strip().upper().removeprefix("-")
    try:
        if isinstance(text, int) and not isinstance(text, bool):
            return signal.Signals(text)
        if value.isdecimal():
            return signal.Signals(int(value))
        if value.isidentifier():
            return signal.Signals[value if value.startswith("SIG") else "SIG" + value]
    except (KeyError, ValueError):
        pass
    raise UsageError(f"unknown signal {given_as or repr(text)}", hint)


def describe_wait_status(status: int) -> str:
    """Decode an `os.waitpid` status: 'exited with code 3', 'killed by signal 9 (KILL),
    perhaps by the kernel's out-of-memory killer'."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        text = f"killed by signal {signum} ({signal_name(signum)})"
        if signum == signal.SIGKILL:
            text += ", perhaps by the kernel's out-of-memory killer"
        return text
    if os.WIFEXITED(status):
        return f"exited with code {os.WEXITSTATUS(status)}"
    return f"stopped with status {status}"


def lost_reason(status: int) -> str:
    """The short form of a wait status, for a task's WorkerLostError: 'signal 9 (perhaps out
    of memory)', 'signal 11 (SEGV)', 'exit code 3'."""
    if os.WIFSIGNALED(status):
        signum = os.WTERMSIG(status)
        if signum == signal.SIGKILL:
            return f"signal {signum} (perhaps out of memory)"
        return f"signal {signum} ({signal_name(signum)})"
    if os.WIFEXITED(status):
        return f"exit code {os.WEXITSTATUS(status)}"
    return f"wait status {status}"


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
