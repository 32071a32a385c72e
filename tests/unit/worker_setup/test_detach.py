"""fleet.worker_setup.detach: what a detached node keeps for a restart in place."""

from __future__ import annotations

import os
import sys

import pytest


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
