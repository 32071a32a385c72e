"""Task execution semantics with real nodes on both brokers: pool limits (max tasks, max
memory, time limits, lost children, autoscale), retries, countdown/ETA/expires, rate limits
and prefetch."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import psutil
import pytest

from fleet.engine import states
from fleet.exceptions import (
    SoftTimeLimitExceeded,
    TimeLimitExceeded,
    WorkerLostError,
)
from tests.support import wait_for


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _lines(path: Path) -> list[str]:
    return path.read_text().split("\n")[:-1] if path.exists() else []


# -- pool limits ---------------------------------------------------------------------------------

def test_max_tasks_per_child_changes_the_child_pid_exactly_every_n_tasks(app, nodes):
    nodes.start("--max-tasks-per-child", "3", concurrency=1)
    from testapp import whoami

    pids = [whoami.delay().get(timeout=10)["pid"] for _ in range(9)]
    assert [len(set(pids[i:i + 3])) for i in (0, 3, 6)] == [1, 1, 1]
    assert len({pids[0], pids[3], pids[6]}) == 3


def test_a_replacement_child_that_fails_to_come_up_is_retried_with_backoff(
        app, nodes, tmp_path):
    flag = tmp_path / "fail-boot"
    node = nodes.start("--max-tasks-per-child", "1", concurrency=1,
                       env={"TESTAPP_FAIL_BOOT": str(flag)})
    from testapp import add

    assert add.delay(1, 1).get(timeout=10) == 2  # the child retires after each task
    flag.write_text("")  # from now on, new children die at birth
    waiting = [add.delay(2, 2), add.delay(3, 3)]
    wait_for(lambda: node.log_text().count("starting a replacement in") >= 3, 10,
             message="several failed starts")
    flag.unlink()
    assert [r.get(timeout=20) for r in waiting] == [4, 6]  # never wedged, nor stopped
    log = node.log_text()
    assert "exited with code 3 before it was ready; starting a replacement in 0.1s" in log
    assert "starting a replacement in 0.2s" in log  # backoff
    assert node.proc.poll() is None


def test_max_memory_per_child_replaces_a_child_that_allocates_past_it(app, nodes):
    node = nodes.start("--max-memory-per-child", "100000", concurrency=1)
    from testapp import add, hog

    pid = hog.delay(150 * 1024).get(timeout=20)  # the task over the line completes...
    wait_for(lambda: pid not in node.children() and len(node.children()) == 1, 10,
             message="the child to be replaced")
    assert add.delay(1, 2).get(timeout=10) == 3
    assert "over the limit of 100000 KiB" in node.log_text()


def test_soft_time_limit_caught_inside_the_task_lets_it_finish(app, nodes):
    nodes.start()
    from testapp import catch_soft

    assert catch_soft.delay().get(timeout=10) == "caught"


def test_per_call_soft_time_limit(app, nodes):
    nodes.start()
    from testapp import sleep

    with pytest.raises(SoftTimeLimitExceeded):
        sleep.apply_async((5,), soft_time_limit=0.3).get(timeout=10)


def test_hard_limit_kills_a_busy_loop_and_its_process_group_and_the_node_goes_on(
        app, nodes, tmp_path):
    node = nodes.start(concurrency=1)
    from testapp import add, spin

    marker = tmp_path / "spin"
    result = spin.apply_async((str(marker),), time_limit=0.3)
    with pytest.raises(TimeLimitExceeded) as raised:
        result.get(timeout=10)
    assert raised.value.args == (0.3,)
    assert result.state == states.FAILURE
    child, grandchild = (int(pid) for pid in marker.read_text().split())
    wait_for(lambda: not _alive(child) and not _alive(grandchild), 5,
             message="the child and the process its task started to be gone")
    assert add.delay(2, 2).get(timeout=10) == 4  # a new child took the slot
    log = node.log_text()
    assert f"Hard time limit (0.3s) exceeded for testapp.spin[{result.id}]" in log


def test_a_child_killed_by_signal_9_fails_its_task_as_worker_lost(app, nodes, tmp_path):
    nodes.start(concurrency=1)
    from testapp import add, block

    gate, marker = tmp_path / "gate", tmp_path / "pid"
    result = block.delay(str(gate), str(marker))
    pid = int(wait_for(lambda: marker.exists() and marker.read_text(), 10, message="start"))
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(WorkerLostError, match=r"worker lost: signal 9 \(perhaps out of memory\)"):
        result.get(timeout=10)
    assert add.delay(1, 1).get(timeout=10) == 2


def test_acks_late_alone_does_not_requeue_a_task_whose_child_died(app, nodes, tmp_path):
    nodes.start(concurrency=1)
    from testapp import late_sleep

    marker = tmp_path / "late"
    result = late_sleep.delay(30, str(marker))
    wait_for(lambda: Path(str(marker) + ".runs").exists(), 10, message="start")
    os.kill(int(Path(str(marker) + ".runs").read_text().split()[0]), signal.SIGKILL)
    with pytest.raises(WorkerLostError, match="signal 9"):
        result.get(timeout=10)
    assert len(Path(str(marker) + ".runs").read_text().split()) == 1
