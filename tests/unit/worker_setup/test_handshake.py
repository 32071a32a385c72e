"""fleet.worker_setup.handshake: the readiness pipe between a detached node and its launcher."""

from __future__ import annotations

import os
import time

from fleet.worker_setup.handshake import Handshake, Outcome, read_outcome, write_line


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


def test_the_first_word_wins_ready_after_an_exit_is_ignored_and_a_failure_after_ready_too():
    exited = Outcome()
    exited.feed("exited killed by signal 9 (KILL)")
    exited.feed("ready 5")
    assert not exited.ready and exited.describe() == "killed by signal 9 (KILL)"
    ready = Outcome()
    ready.feed("ready 5")
    ready.feed("failed too late")
    assert ready.ready and ready.reason == ""


def test_read_outcome_takes_a_last_line_without_newline_at_end_of_file():
    read_fd, write_fd = os.pipe()
    try:
        os.write(write_fd, b"failed no broker\nexited exited with code 75")
        os.close(write_fd)
        outcome = read_outcome(read_fd)
    finally:
        os.close(read_fd)
    assert outcome.lines == ["failed no broker", "exited exited with code 75"]
    assert outcome.describe() == "exited with code 75; no broker"


def test_read_outcome_gives_up_at_its_deadline():
    read_fd, write_fd = os.pipe()
    try:
        outcome = read_outcome(read_fd, deadline=time.monotonic() + 0.05)
    finally:
        os.close(read_fd)
        os.close(write_fd)
    assert not outcome.ready and outcome.lines == []


def test_the_node_says_ready_once_or_why_it_failed_on_one_line():
    read_fd, write_fd = os.pipe()
    handshake = Handshake(write_fd)
    handshake.failed("cannot import app 'x':\n  No module named x")
    handshake.ready()  # the pipe is closed after the first word: nothing more is sent
    assert handshake.fd is None
    try:
        outcome = read_outcome(read_fd)
    finally:
        os.close(read_fd)
    assert outcome.lines == ["failed cannot import app 'x': No module named x"]


def test_a_handshake_without_a_pipe_says_nothing():
    Handshake(None).ready()  # a node not started detached: no launcher to tell


def test_write_line_ignores_a_reader_that_went_away():
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    write_line(write_fd, "ready 1")  # EPIPE (SIGPIPE is ignored by Python): no error
    os.close(write_fd)
