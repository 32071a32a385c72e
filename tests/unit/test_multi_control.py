"""multi's memory and identity checks, and the detach handshake, without starting nodes."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from pathlib import Path

import psutil
import pytest

from fleet.multi import expand_nodes, parse_multi_args
from fleet.multictl.control import (
    NOT_OURS,
    RUNNING,
    STALE,
    STOPPED,
    NodeRecord,
    StateFile,
    is_node_process,
    probe,
    record_for,
    status,
)
from fleet.operator_errors import EXIT_USAGE, FleetError, UsageError
from fleet.worker_setup.detach import Outcome, log_tail, parse_umask, read_outcome, resolve_ids


def record(tmp_path: Path, name: str = "w1@h", **fields) -> NodeRecord:
    values = {"argv": ["python", "-m", "fleet", "worker", "--detach", "-n", name],
              "workdir": str(tmp_path), "pidfile": str(tmp_path / "w1.pid"),
              "logfile": str(tmp_path / "w1%I.log"), **fields}
    return NodeRecord(name, **values)


# -- the state file --------------------------------------------------------------------------


def test_the_state_file_round_trips_every_field(tmp_path):
    state = StateFile(tmp_path / "multi.toml")
    original = record(tmp_path, pid=123, create_time=1700000000.25, started="2026-11-28T05:00")
    state.remember([original])
    assert state.load() == {"w1@h": original}


def test_a_missing_state_file_means_no_known_nodes(tmp_path):
    assert StateFile(tmp_path / "nothing.toml").load() == {}


def test_a_corrupt_state_file_is_an_error_saying_what_to_do(tmp_path):
    path = tmp_path / "multi.toml"
    path.write_text("[nodes\n")
    with pytest.raises(FleetError, match="move it away"):
        StateFile(path).load()


def test_concurrent_updates_never_lose_a_node(tmp_path):
    path = tmp_path / "multi.toml"
    script = (
        "import sys; from fleet.multictl.control import StateFile, NodeRecord\n"
        "for i in range(15):\n"
        "    n = f'{sys.argv[2]}{i}@h'\n"
        "    StateFile(sys.argv[1]).remember([NodeRecord(n, ['x'], '.', n, n)])\n"
    )
    writers = [subprocess.Popen([sys.executable, "-c", script, str(path), prefix])
               for prefix in ("a", "b", "c")]
    assert [writer.wait(60) for writer in writers] == [0, 0, 0]
    assert len(StateFile(path).load()) == 45
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_record_keeps_the_full_command_the_directory_and_absolute_files(tmp_path):
    spec = parse_multi_args(["w1", "-A", "proj", "--pidfile=run/%n.pid", "--logfile=%n%I.log"],
                            hostname="h")
    made = record_for(expand_nodes(spec)[0], executable="/usr/bin/python3", workdir=tmp_path)
    assert made.argv[:6] == ["/usr/bin/python3", "-m", "fleet", "worker", "--detach", "-n"]
    assert "--app=proj" in made.argv
    assert made.workdir == str(tmp_path)
    assert made.pidfile == str(tmp_path / "run" / "w1.pid")
    assert made.main_log == tmp_path / "w1.log"


# -- is it our node? -------------------------------------------------------------------------


@pytest.fixture
def bystander():
    process = subprocess.Popen(["sleep", "30"])
    yield process
    process.kill()
    process.wait()


def test_an_unrelated_process_is_not_a_node(bystander):
    assert not is_node_process(psutil.Process(bystander.pid), "w1@h")


def test_a_process_started_as_that_node_is_recognised_by_its_argv():
    code = "import time; time.sleep(30)"
    process = subprocess.Popen([sys.executable, "-c", code, "fleet", "worker", "-n", "w1@h"])
    try:
        found = psutil.Process(process.pid)
        assert not is_node_process(found, "w1@h")  # "fleet" must be the program, not an arg
    finally:
        process.kill()
        process.wait()


def test_a_node_title_is_recognised_for_its_own_name_only():
    code = ("import setproctitle, time; setproctitle.setproctitle('fleet worker w1@h main');"
            " time.sleep(30)")
    process = subprocess.Popen([sys.executable, "-c", code])
    try:
        found = psutil.Process(process.pid)
        wait = threading.Event()
        for _ in range(200):
            if (found.cmdline() or [""])[0].startswith("fleet worker"):  # the title
                break
            wait.wait(0.01)
        assert is_node_process(found, "w1@h")
        assert not is_node_process(found, "w1@other")
    finally:
        process.kill()
        process.wait()


def test_probe_tells_stopped_stale_and_not_ours(tmp_path, bystander):
    node = record(tmp_path)
    assert probe(node).state == STOPPED
    Path(node.pidfile).write_text("999999\n")
    assert probe(node).state == STALE
    Path(node.pidfile).write_text("garbage\n")
    assert probe(node).state == STALE
    Path(node.pidfile).write_text(f"{bystander.pid}\n")
    found = probe(node)
    assert found.state == NOT_OURS and "left alone" in found.detail


def test_a_recycled_pid_in_the_record_is_not_taken_for_the_node(tmp_path, bystander):
    node = record(tmp_path, pid=bystander.pid, create_time=1.0)
    assert probe(node).state == STOPPED


def test_status_rows_carry_every_column(tmp_path):
    [row] = status([record(tmp_path)])
    assert row["state"] == STOPPED and row["state"] != RUNNING
    assert set(row) >= {"node", "pid", "state", "uptime", "memory", "children", "consuming",
                        "logfile"}


# -- the detach handshake --------------------------------------------------------------------


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


def test_umask_and_user_checks():
    assert parse_umask(None) == 0o022 and parse_umask("027") == 0o027
    with pytest.raises(UsageError):
        parse_umask("999")
    with pytest.raises(UsageError, match="no such user"):
        resolve_ids("no-such-user-here", None)
    with pytest.raises(UsageError, match="no such group"):
        resolve_ids(None, "no-such-group-here")
    assert resolve_ids(str(os.getuid()), None)[0] == os.getuid()


def test_log_tail_gives_the_last_non_empty_lines(tmp_path):
    log = tmp_path / "w1.log"
    log.write_text("".join(f"line {n}\n\n" for n in range(30)))
    assert log_tail(log, 3) == ["line 27", "line 28", "line 29"]
    assert log_tail(tmp_path / "missing.log") == []


def test_uid_without_detach_is_a_usage_error():
    from fleet.cli import cli

    result = subprocess.run([sys.executable, "-m", "fleet", "worker", "--uid", "nobody"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == EXIT_USAGE and "--detach" in result.stderr
    assert cli.commands["multi"] is not None


def test_a_pid_file_locked_by_another_live_process_is_never_removed(tmp_path):
    from fleet.multictl.control import remove_stale

    node = record(tmp_path)
    code = ("import fcntl, os, sys, time; fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT);"
            " fcntl.flock(fd, fcntl.LOCK_EX); os.write(fd, b'%d\\n' % os.getpid());"
            " print('locked', flush=True); time.sleep(30)")
    holder = subprocess.Popen([sys.executable, "-c", code, node.pidfile], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        found = probe(node)
        assert found.state == NOT_OURS and "held by" in found.detail
        events = []
        remove_stale(found, events.append)
        assert Path(node.pidfile).exists() and events[0].kind == "stale"
    finally:
        holder.kill()
        holder.wait()


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
