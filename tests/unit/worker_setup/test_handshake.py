"""fleet.worker_setup.handshake: the readiness pipe between a detached node and its launcher."""

from __future__ import annotations

import os

from fleet.worker_setup.handshake import Outcome, read_outcome


def test_an_outcome_is_ready_with_the_pid_or_says_why_not():
    outcome = Outcome()
    outcome.feed("ready 42")
    assert outcome.ready and outcome.pid == 42
    failed = Outcome()
    failed.feed("failed cannot import app 'x'")
    failed.feed("exited exited with code 4")
    assert not failed.ready
    assert failed.describe() == "exited with code 4; cannot import app 'x'"
    assert Outcome().describe() == "it ended without saying why"


def test_read_outcome_returns_at_ready_even_if_the_pipe_stays_open():
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, b"ready 7\n")
        assert read_outcome(read_fd).pid == 7
    finally:
        os.close(read_fd)
        os.close(write_fd)
