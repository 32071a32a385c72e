"""fleet.multictl.control: is a process our node? Probing, status rows and stale pid files,
without starting nodes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from fleet.multictl.control import (
    NOT_OURS,
    RUNNING,
    STALE,
    STOPPED,
    is_node_process,
    probe,
    remove_stale,
    status,
)
from fleet.multictl.state import NodeRecord
from tests.support import wait_for


def record(tmp_path: Path, name: str = "w1@h", **fields) -> NodeRecord:
    values = {"argv": ["python", "-m", "fleet", "worker", "--detach", "-n", name],
              "workdir": str(tmp_path), "pidfile": str(tmp_path / "w1.pid"),
              "logfile": str(tmp_path / "w1%I.log"), **fields}
    return NodeRecord(name, **values)


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
        wait_for(lambda: (found.cmdline() or [""])[0].startswith("fleet worker"), 10,
                 message="the process title")
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


def test_a_pid_file_locked_by_another_live_process_is_never_removed(tmp_path):
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
