"""fleet.multictl.launch: which nodes are forked, and how each launch ends, with stand-in
launchers (tiny Python programs speaking the readiness protocol) instead of real nodes."""

from __future__ import annotations

import os
import shlex
import sys
from pathlib import Path

import pytest

from fleet.multictl import launch
from fleet.multictl.state import NodeRecord
from fleet.worker_setup.options import WorkerOptions

PYTHON = os.path.abspath(sys.executable)


def record(tmp_path: Path, argv: list[str], name: str = "w1@h") -> NodeRecord:
    return NodeRecord(name, argv, str(tmp_path), str(tmp_path / "w1.pid"),
                      str(tmp_path / "w1%I.log"))


def test_a_node_of_this_interpreter_whose_command_reads_back_is_forked(tmp_path):
    argv = [PYTHON, "-m", "fleet", "worker", "--detach", "-n", "w1@h", "--concurrency=2"]
    options = launch._forkable(record(tmp_path, argv))
    assert options == WorkerOptions(hostname="w1@h", concurrency=2, detach=True)


@pytest.mark.parametrize("argv", [
    ["/other/python", "-m", "fleet", "worker", "--detach"],  # --executable: a new program
    [PYTHON, "-m", "fleet", "worker", "--detach", "--concurrency=0"],  # fleet worker says why
    [PYTHON, "-m", "fleet", "multi", "start"],
])
def test_any_other_node_is_started_as_a_new_program(tmp_path, argv):
    assert launch._forkable(record(tmp_path, argv)) is None


def test_a_node_whose_directory_is_gone_is_started_as_a_new_program(tmp_path):
    node = record(tmp_path, [PYTHON, "-m", "fleet", "worker", "--detach"])
    node.workdir = str(tmp_path / "gone")
    assert launch._forkable(node) is None


def speaking(*lines: str, then: str = "") -> list[str]:
    """A stand-in launcher that writes `lines` on the readiness pipe, then runs `then`."""
    code = ("import os, sys, time\nfd = int(os.environ['FLEET_READY_FD'])\n"
            f"os.write(fd, {''.join(line + chr(10) for line in lines).encode()!r})\n{then}")
    return [PYTHON, "-c", code]


def start(tmp_path: Path, argv: list[str], timeout: float = 30) -> tuple:
    events = []
    [result] = launch.launch_all([record(tmp_path, argv)], None, timeout, events.append)
    return result, events


def test_a_node_that_says_ready_with_a_live_pid_is_ok_and_recorded(tmp_path):
    result, events = start(tmp_path, speaking(f"ready {os.getpid()}"))
    assert result.ok and result.record.pid == os.getpid() and result.record.create_time > 0
    assert [(event.kind, event.text) for event in events] == [("ok", f"pid {os.getpid()}")]


def test_a_node_that_failed_is_reported_in_its_own_words_with_its_log(tmp_path):
    (tmp_path / "w1.log").write_text("boot\ncannot reach the broker\n")
    result, events = start(tmp_path, speaking("failed cannot reach the broker",
                                              "exited exited with code 75"))
    assert not result.ok
    assert result.reason == "exited with code 75; cannot reach the broker"
    assert events[-1].kind == "failed" and events[-1].details == ("boot",
                                                                 "cannot reach the broker")


def test_a_launcher_that_exits_with_an_error_before_detaching_says_why_in_the_log(tmp_path):
    argv = [PYTHON, "-c", "import sys; print('fleet worker: bad option', file=sys.stderr); "
            "sys.exit(2)"]
    result, _ = start(tmp_path, argv)
    assert result.reason == "its launcher exited with code 2: fleet worker: bad option"
    assert "w1@h did not start: fleet worker: bad option" in (tmp_path / "w1.log").read_text()


def test_a_node_that_says_nothing_within_the_timeout_is_failed_and_says_so(tmp_path):
    result, _ = start(tmp_path, speaking(then="time.sleep(0.5)"), timeout=0.1)
    assert not result.ok and result.reason.startswith("not consuming yet after the timeout")


def test_a_program_that_cannot_run_is_failed_with_the_reason(tmp_path):
    result, _ = start(tmp_path, [str(tmp_path / "no-such-python"), "-m", "fleet"])
    assert not result.ok and "cannot run" in result.reason and "No such file" in result.reason


def test_get_prints_a_shell_line_that_runs_the_node_as_start_does(tmp_path):
    workdir = tmp_path / "my project"
    argv = [PYTHON, "-m", "fleet", "worker", "--detach", "-n", "w1@h", "--queues=a b",
            "--logfile=/l/%n%I.log"]
    node = NodeRecord("w1@h", argv, str(workdir), "p", "l")
    environ = {"FLEET_BROKER_URL": "redis://:pa ss@h/0", "PYTHONPATH": "/src", "HOME": "/root",
               "FLEET_READY_FD": "7", "FLEET_PIDFILE_FD": "8:/p", "PATH": "/bin"}
    line = launch.shell_command(node, environ, reveal=True)
    assert line == (f"cd '{workdir}' && env 'FLEET_BROKER_URL=redis://:pa ss@h/0' "
                    f"PYTHONPATH=/src {PYTHON} -m fleet worker --detach -n w1@h "
                    "'--queues=a b' --logfile=/l/%n%I.log")
    # by default the password is masked (README, Security), the rest unchanged
    assert launch.shell_command(node, environ) == line.replace("pa ss", "********")
    assert launch.shell_command(node, {}) == \
        f"cd '{workdir}' && " + " ".join(shlex.quote(arg) for arg in argv)
