"""fleet.worker_setup.detach: what a detached node keeps for a restart in place, and what it
refuses before it forks. (Detaching for real: tests/integration/test_multi.py.)"""

from __future__ import annotations

import os
import pwd
import sys

import pytest

from fleet.operator_errors import UsageError
from fleet.worker_setup.detach import detach_worker


def test_defaults_chosen_when_detaching_are_kept_for_a_restart_in_place(monkeypatch):
    from fleet.worker_setup.detach import _add_to_own_argv

    monkeypatch.setattr(sys, "argv", ["fleet", "worker", "--detach", "--", "a=1"])
    _add_to_own_argv("--pidfile=/run/fleet/%n.pid")
    assert sys.argv == ["fleet", "worker", "--detach", "--pidfile=/run/fleet/%n.pid", "--",
                        "a=1"]


@pytest.mark.parametrize(("given", "expected"), [
    (["worker", "--detach", "-n", "w1"], ["worker", "-n", "w1"]),
    (["--workdir", "rel", "worker", "--detach"], ["--workdir", "CWD", "worker"]),
    (["worker", "--workdir=rel", "--", "--detach", "x=--workdir=a"],
     ["worker", "--workdir=CWD", "--", "--detach", "x=--workdir=a"]),
])
def test_a_restart_in_place_runs_the_same_command_minus_detach(given, expected):
    from fleet.engine.worker import _same_command

    cwd = os.getcwd()
    assert _same_command(given) == [arg.replace("CWD", cwd) for arg in expected]


def test_a_ready_fd_that_is_not_open_is_a_usage_error_naming_the_variable():
    from fleet.worker_setup.detach import _checked_fd

    with pytest.raises(UsageError, match=r"\$FLEET_READY_FD='x' is not an open file"):
        _checked_fd("x")
    read_fd, write_fd = os.pipe()
    os.close(read_fd)
    os.close(write_fd)
    with pytest.raises(UsageError, match="unset FLEET_READY_FD"):
        _checked_fd(str(write_fd))


def test_without_detach_another_user_is_a_usage_error_and_the_umask_applies_in_place():
    other = next(entry for entry in pwd.getpwall() if entry.pw_uid != os.getuid())
    with pytest.raises(UsageError, match="only apply with --detach"):
        detach_worker("w1@h", None, None, False, other.pw_name, None, None)
    before = os.umask(0o022)
    try:
        assert detach_worker("w1@h", None, None, False, str(os.getuid()), None, "027") is None
        assert os.umask(0o022) == 0o027
    finally:
        os.umask(before)
