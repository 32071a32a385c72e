"""Delivery and shutdown semantics with real nodes and real signals, on both brokers."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from fleet.engine import states
from fleet.engine.transport.base import DEAD_LETTER_QUEUE, Outgoing
from fleet.exceptions import WorkerLostError
from tests.support import wait_for


def queue(app, name: str = "default"):
    for stats in app.broker.queue_stats():
        if stats.name == name:
            return stats
    return None


def test_term_lets_the_running_task_finish_and_exits_zero(app, nodes, tmp_path):
    node = nodes.start()
    from testapp import sleep

    marker = str(tmp_path / "done")
    result = sleep.delay(0.8, marker)
    wait_for(lambda: Path(marker + ".started").exists(), 10, message="task start")
    node.signal(signal.SIGTERM)
    assert node.wait(15) == 0
    assert Path(marker).exists()
    assert result.get(timeout=5) == 0.8
    assert "Warm shutdown (TERM)" in node.log_text()


def test_quit_puts_prefetched_tasks_back_and_fails_the_running_one(app, nodes, tmp_path):
    from testapp import add, sleep

    marker = str(tmp_path / "run")
    running = sleep.delay(30, marker)
    waiting = [add.delay(i, i) for i in range(3)]
    # all four queued first, so one reserve takes them (prefetch 4); a long prefetch timeout
    # so the node keeps the three behind the long task
    node = nodes.start(concurrency=1, env={"FLEET_WORKER_PREFETCH_TIMEOUT": "60"})
    wait_for(lambda: Path(marker + ".started").exists(), 10, message="task start")
    # prefetch is "up to 4": under load the node may hold the running task and only two more
    wait_for(lambda: queue(app).reserved >= 3, 10, message="prefetch of more tasks")
    node.signal(signal.SIGQUIT)
    assert node.wait(15) == 0
    stats = queue(app)
    assert (stats.ready, stats.reserved) == (3, 0)  # the three adds are back, unstarted
    assert all(r.state == states.PENDING for r in waiting)
    with pytest.raises(WorkerLostError, match="shut down cold"):
        running.get(timeout=5)


def test_quit_returns_a_running_acks_late_task_to_its_queue(app, nodes, tmp_path):
    node = nodes.start(concurrency=1)
    from testapp import late_sleep

    marker = str(tmp_path / "late")
    result = late_sleep.delay(30, marker)
    wait_for(lambda: Path(marker + ".runs").exists(), 10, message="task start")
    node.signal(signal.SIGQUIT)
    assert node.wait(15) == 0
    assert queue(app).ready == 1
    assert result.state == states.PENDING


def test_sigkill_of_the_main_process_hands_an_acks_late_task_to_another_node(
        app, nodes, tmp_path):
    first = nodes.start(name="first", concurrency=1)
    from testapp import late_sleep

    marker = str(tmp_path / "late")
    result = late_sleep.delay(0.5, marker)
    wait_for(lambda: Path(marker + ".runs").exists(), 10, message="first run")
    children = first.children()
    first.signal(signal.SIGKILL)
    first.wait(5)
    # the pool children die with their main process (no orphan keeps running the task)
    wait_for(lambda: not any(_alive(pid) for pid in children), 5, message="children gone")
    nodes.start(name="second", concurrency=1)
    assert result.get(timeout=15) == 0.5
    runs = Path(marker + ".runs").read_text().split()
    assert len(runs) == 2 and runs[0] != runs[1]


def test_sigkill_of_the_main_process_reports_an_early_acked_running_task(app, nodes, tmp_path):
    first = nodes.start(name="first", concurrency=1)
    from testapp import sleep

    marker = str(tmp_path / "early")
    # track_started: STARTED is stored in the same commit as the broker's "started" mark,
    # so once we see it, the broker knows the task began (a kill within the few ms before
    # that commit would requeue it instead, as documented)
    result = sleep.apply_async((30, marker), track_started=True)
    wait_for(lambda: result.state == states.STARTED, 10, message="STARTED")
    first.signal(signal.SIGKILL)
    first.wait(5)
    nodes.start(name="second", concurrency=1)
    with pytest.raises(WorkerLostError, match="died while the task ran"):
        result.get(timeout=15)


def test_a_child_killed_mid_task_is_replaced_and_the_task_fails(app, nodes, tmp_path):
    node = nodes.start(concurrency=1)
    from testapp import add, sleep

    marker = str(tmp_path / "victim")
    result = sleep.delay(30, marker)
    child_pid = int(wait_for(lambda: _read(marker + ".started"), 10, message="start"))
    os.kill(child_pid, signal.SIGKILL)
    with pytest.raises(WorkerLostError, match="signal 9"):
        result.get(timeout=10)
    assert add.delay(1, 2).get(timeout=10) == 3  # a new child took the slot
    assert child_pid not in node.children()


def test_unknown_task_goes_to_the_dead_letter_queue_and_the_node_goes_on(app, nodes):
    node = nodes.start()
    from testapp import add

    app.send_task("testapp.nope", (1,))
    assert add.delay(1, 1).get(timeout=10) == 2
    wait_for(lambda: queue(app, DEAD_LETTER_QUEUE), 5, message="a dead letter")
    [dead] = app.broker.dead_letters()
    assert "unknown task 'testapp.nope'" in dead.reason
    assert "testapp.add" in dead.reason  # says what is registered
    assert "unknown task 'testapp.nope'" in node.log_text()


@pytest.mark.parametrize("body", ["not json at all", '{"v": 99, "id": "x"}', "[1, 2]",
                                  '{"v": 1, "id": "x", "task": "testapp.add", "args": 3, '
                                  '"kwargs": {}}'])
def test_an_undecodable_message_is_moved_aside_and_the_node_goes_on(app, nodes, body):
    node = nodes.start()
    from testapp import add

    app.broker.put([Outgoing("bad-message", "default", body)])
    assert add.delay(2, 3).get(timeout=10) == 5
    wait_for(lambda: queue(app, DEAD_LETTER_QUEUE), 5, message="a dead letter")
    [dead] = app.broker.dead_letters()
    assert dead.body == body and "undecodable" in dead.reason
    assert node.proc.poll() is None


def test_a_revoked_expired_task_is_not_run(app, nodes):
    from testapp import add

    result = add.apply_async((1, 1), expires=0.01)
    import time

    time.sleep(0.05)
    nodes.start()
    assert add.delay(2, 2).get(timeout=10) == 4
    wait_for(lambda: result.state == states.REVOKED, 5, message="REVOKED")


def _alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def _read(path: str) -> str | None:
    try:
        return Path(path).read_text() or None
    except FileNotFoundError:
        return None


def test_a_child_killed_mid_task_requeues_an_acks_late_task_that_rejects_on_worker_lost(
        app, nodes, tmp_path):
    node = nodes.start(concurrency=1)
    from testapp import late_reject_sleep

    marker = str(tmp_path / "late")
    result = late_reject_sleep.delay(0.3, marker)
    wait_for(lambda: Path(marker + ".runs").exists(), 10, message="first run")
    first_child = int(Path(marker + ".runs").read_text().split()[0])
    os.kill(first_child, signal.SIGKILL)
    assert result.get(timeout=10) == 0.3  # ran again in the replacement child
    assert len(Path(marker + ".runs").read_text().split()) == 2
    assert "sent back to queue 'default'" in node.log_text()


def test_int_is_warm_and_a_second_int_is_cold(app, nodes, tmp_path):
    node = nodes.start(concurrency=1)
    from testapp import sleep

    marker = str(tmp_path / "int")
    result = sleep.delay(30, marker)
    wait_for(lambda: Path(marker + ".started").exists(), 10, message="task start")
    node.signal(signal.SIGINT)
    wait_for(lambda: "Warm shutdown (INT)" in node.log_text(), 5, message="warm shutdown")
    assert node.proc.poll() is None  # still waiting for the running task
    node.signal(signal.SIGINT)
    assert node.wait(10) == 0
    assert "Cold shutdown (second INT)" in node.log_text()
    with pytest.raises(WorkerLostError):
        result.get(timeout=5)
