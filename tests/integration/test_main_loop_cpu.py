"""The node's main loop sleeps when nothing is due: CPU time of a node's main process."""

from __future__ import annotations

from pathlib import Path

import psutil

from tests.support import wait_for


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


def test_the_main_loop_sleeps_while_a_long_task_runs(app, nodes, tmp_path):
    # Regression (issue 13): while every child ran a task longer than
    # worker_prefetch_timeout, the loop spun with a zero timeout (about 2 CPU-seconds per
    # 4-second task).
    node = nodes.start(concurrency=1)
    from testapp import sleep

    marker = str(tmp_path / "long")
    result = sleep.delay(3.0, marker)
    wait_for(lambda: Path(marker + ".started").exists(), 10, message="the task to start")
    before = cpu_seconds(node.pid)
    assert result.get(timeout=20) == 3.0
    used = cpu_seconds(node.pid) - before
    assert used < 0.3, f"the main process used {used:.2f} CPU-seconds during a 3 s task"


def test_a_task_past_its_soft_limit_does_not_make_the_loop_spin(app, nodes, tmp_path):
    # Regression: a soft limit already signalled stayed a deadline in the past until the
    # task ended, so the loop spun meanwhile.
    node = nodes.start(concurrency=1)
    from testapp import outlive_soft_limit

    result = outlive_soft_limit.delay(2.0)
    wait_for(lambda: "Soft time limit" in node.log_text(), 10, message="the soft limit")
    before = cpu_seconds(node.pid)
    assert result.get(timeout=20) == "caught"
    used = cpu_seconds(node.pid) - before
    assert used < 0.3, f"the main process used {used:.2f} CPU-seconds"
