"""The node process itself: pool limits, signals, pid file, titles, on both brokers."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil
import pytest

from fleet.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from tests.support import run_fleet, wait_for


def test_soft_time_limit_raises_inside_the_task(app, nodes):
    nodes.start("--soft-time-limit", "0.3")
    from testapp import sleep

    with pytest.raises(SoftTimeLimitExceeded):
        sleep.delay(5).get(timeout=10)


def test_hard_time_limit_kills_and_replaces_the_child(app, nodes):
    node = nodes.start("--time-limit", "0.3", concurrency=1)
    from testapp import add, whoami

    before = whoami.delay().get(timeout=10)["pid"]
    from testapp import sleep

    with pytest.raises(TimeLimitExceeded, match=r"0\.3s"):
        sleep.delay(30).get(timeout=10)
    assert add.delay(1, 1).get(timeout=10) == 2
    assert before not in node.children()
    assert "Hard time limit (0.3s) exceeded" in node.log_text()


def test_per_call_time_limit_overrides_the_node(app, nodes):
    nodes.start()
    from testapp import sleep

    with pytest.raises(TimeLimitExceeded):
        sleep.apply_async((30,), time_limit=0.2).get(timeout=10)


def test_max_tasks_per_child_replaces_children_in_the_same_slot(app, nodes, tmp_path):
    nodes.start("--max-tasks-per-child", "2", logfile=str(tmp_path / "%n%I.log"),
                concurrency=1)
    from testapp import whoami

    pids = [whoami.delay().get(timeout=10)["pid"] for _ in range(4)]
    assert pids[0] == pids[1] and pids[2] == pids[3] and pids[0] != pids[2]
    # the replacement writes to the same slot's log file: %I is the slot, not a counter
    assert (tmp_path / "w1-1.log").exists()
    assert not (tmp_path / "w1-2.log").exists()


def test_logfile_per_process_with_percent_big_i(app, nodes, tmp_path):
    nodes.start(logfile=str(tmp_path / "%n%I.log"), concurrency=2)
    for name in ("w1.log", "w1-1.log", "w1-2.log"):
        assert (tmp_path / name).exists(), name


def test_rate_limit_spaces_tasks_out(app, nodes):
    nodes.start("--", "task_default_rate_limit=5/s")
    from testapp import add

    started = time.monotonic()
    results = [add.delay(i, i) for i in range(6)]
    for result in results:
        result.get(timeout=10)
    # a bucket of one token refilled 5 times a second: 6 tasks need at least 1 s
    assert time.monotonic() - started >= 0.9


def test_ttin_and_ttou_grow_and_shrink_the_pool(app, nodes):
    node = nodes.start(concurrency=1)
    node.signal(signal.SIGTTIN)
    wait_for(lambda: len(node.children()) == 2, 5, message="two children")
    node.signal(signal.SIGTTOU)
    wait_for(lambda: len(node.children()) == 1, 5, message="one child")


def test_hup_restarts_in_place_keeping_the_pid(app, nodes):
    node = nodes.start()
    from testapp import add

    old_children = set(node.children())
    node.signal(signal.SIGHUP)
    wait_for(lambda: node.log_text().count(" ready: ") == 2, 15, message="second ready")
    assert node.proc.poll() is None
    assert not old_children & set(node.children())
    assert add.delay(2, 2).get(timeout=10) == 4


def test_usr1_writes_stacks_into_the_log(app, nodes, tmp_path):
    node = nodes.start(logfile=str(tmp_path / "%n%I.log"), concurrency=1)
    from testapp import sleep

    marker = str(tmp_path / "m")
    sleep.delay(2, marker)
    wait_for(lambda: Path(marker + ".started").exists(), 10, message="task start")
    node.signal(signal.SIGUSR1)
    wait_for(lambda: "Stack dump requested" in (tmp_path / "w1.log").read_text(), 5,
             message="main dump")
    wait_for(lambda: "in sleep" in (tmp_path / "w1-1.log").read_text(), 5,
             message="the busy child's stack, showing the task")


def test_process_titles_name_the_node_and_role(app, nodes):
    node = nodes.start(concurrency=2)
    def title(pid: int) -> str:  # setproctitle pads the old argv area with empty strings
        return " ".join(part for part in psutil.Process(pid).cmdline() if part)

    assert title(node.pid).startswith("fleet worker w1@") and title(node.pid).endswith(" main")
    titles = sorted(title(pid) for pid in node.children())
    assert [t.rsplit(" ", 2)[1:] for t in titles] == [["child", "1"], ["child", "2"]]


def test_a_second_node_with_the_same_pidfile_refuses_to_start(app, nodes, tmp_path):
    pidfile = tmp_path / "run" / "w1.pid"
    first = nodes.start("--pidfile", str(pidfile))
    assert pidfile.read_text().split() == [str(first.pid), first.name + "@" +
                                           pidfile.read_text().split()[1].split("@")[1]]
    second = nodes.start("--pidfile", str(pidfile), name="w1b", ready=False)
    assert second.wait(15) == 73
    assert "held by a running node" in second.log.with_suffix(".err").read_text()
    first.signal(signal.SIGTERM)
    assert first.wait(15) == 0
    assert not pidfile.exists()  # removed at exit


def test_a_stale_pidfile_is_replaced(app, nodes, tmp_path):
    pidfile = tmp_path / "w1.pid"
    pidfile.write_text("999999\n")
    node = nodes.start("--pidfile", str(pidfile))
    assert pidfile.read_text().split()[0] == str(node.pid)
    assert "Removing stale pid file" in node.log_text()


def test_unreachable_broker_is_a_clear_error_with_its_own_exit_code(tmp_path):
    from tests.conftest import _free_port
    from tests.support import fleet_env

    env = fleet_env(f"redis://127.0.0.1:{_free_port()}/0",
                    FLEET_BROKER_CONNECTION_MAX_RETRIES="2",
                    FLEET_BROKER_CONNECTION_RETRY_DELAY="0.05")
    done = run_fleet("worker", "-A", "testapp", env=env)
    assert done.returncode == 75
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("fleet: cannot reach the broker after 3 attempt(s)")
    assert "retrying in" in done.stderr  # it did retry, and said so


def test_an_app_that_cannot_be_imported_fails_fast(tmp_path, sqlite_url):
    from tests.support import fleet_env

    done = run_fleet("worker", "-A", "no_such_module", env=fleet_env(sqlite_url))
    assert done.returncode == 4
    assert "cannot import app 'no_such_module'" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
