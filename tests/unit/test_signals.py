"""fleet.signals: the one parser of signal names, the wait-status decoders, the recorder."""

from __future__ import annotations

import os
import signal

import pytest

from fleet.operator_errors import UsageError
from fleet.signals import (
    SIGNAL_EXAMPLES,
    SignalRecorder,
    describe_wait_status,
    lost_reason,
    parse_signal,
    signal_name,
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [("kill", signal.SIGKILL), ("SIGUSR1", signal.SIGUSR1), ("1", signal.SIGHUP),
     ("-TERM", signal.SIGTERM), (" term ", signal.SIGTERM), (15, signal.SIGTERM),
     ("sigquit", signal.SIGQUIT)],
)
def test_parse_signal_accepts_names_numbers_and_the_sig_prefix(given, expected):
    assert parse_signal(given) is expected


@pytest.mark.parametrize("given", ["FOO", "0", "99", "", "SIG", "TERM KILL", True, -1, "1.5"])
def test_parse_signal_refuses_anything_else_with_examples(given):
    with pytest.raises(UsageError) as caught:
        parse_signal(given)
    assert caught.value.message.startswith("unknown signal")
    assert caught.value.hint == SIGNAL_EXAMPLES


def test_parse_signal_names_what_was_given_and_takes_the_callers_hint():
    with pytest.raises(UsageError) as caught:
        parse_signal("BAR", given_as="--signal BAR", hint="try -TERM")
    assert caught.value.message == "unknown signal --signal BAR"
    assert caught.value.hint == "try -TERM"


def test_signal_name_drops_the_prefix_and_keeps_unknown_numbers():
    assert signal_name(15) == "TERM"
    assert signal_name(9) == "KILL"
    assert signal_name(12345) == "12345"


def _status_of(code: str) -> int:
    """The real wait status of a child running `code` (no hand-built bit patterns)."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            exec(code)  # test-only, constant strings
        finally:
            os._exit(0)
    return os.waitpid(pid, 0)[1]


def test_wait_statuses_are_decoded_from_real_children():
    exited = _status_of("os._exit(3)")
    assert describe_wait_status(exited) == "exited with code 3"
    assert lost_reason(exited) == "exit code 3"

    killed = _status_of("os.kill(os.getpid(), signal.SIGKILL)")
    assert describe_wait_status(killed) == (
        "killed by signal 9 (KILL), perhaps by the kernel's out-of-memory killer")
    assert lost_reason(killed) == "signal 9 (perhaps out of memory)"

    segv = _status_of("signal.signal(signal.SIGSEGV, signal.SIG_DFL); "
                      "os.kill(os.getpid(), signal.SIGSEGV)")
    assert describe_wait_status(segv).startswith("killed by signal 11 (SEGV)")
    assert lost_reason(segv) == "signal 11 (SEGV)"


def test_the_recorder_only_records_and_hands_signals_to_the_loop_in_order():
    recorder = SignalRecorder()
    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGUSR1, signal.SIGUSR2)}
    try:
        recorder.install([signal.SIGUSR1, signal.SIGUSR2])
        os.kill(os.getpid(), signal.SIGUSR2)
        os.kill(os.getpid(), signal.SIGUSR1)
        assert recorder.drain() == [signal.SIGUSR2, signal.SIGUSR1]
        assert recorder.drain() == []
        recorder.restore()
        assert signal.getsignal(signal.SIGUSR1) is signal.SIG_DFL
    finally:
        recorder.restore()
        recorder.close()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
