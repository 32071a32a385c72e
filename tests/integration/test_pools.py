"""The three pools (`fleet worker --pool prefork|solo|threads`) with real nodes, on both
brokers: what every pool does alike, and what solo and threads refuse."""

from __future__ import annotations

import signal
import threading
import time
from pathlib import Path

import pytest

from fleet.engine import events, states
from fleet.exceptions import TaskRevokedError, WorkerLostError
from fleet.nodenames import host_format
from tests.support import run_fleet, wait_for

POOLS = ["prefork", "solo", "threads"]
IN_PROCESS = ["solo", "threads"]


def full(name: str) -> str:
    return host_format(f"{name}@%h")


def start(nodes, pool: str, *args: str, name: str = "w1", **options):
    """A node of `pool`: one child, or one thread (solo takes no -c but 1)."""
    options.setdefault("concurrency", 1)
    return nodes.start("--pool", pool, *args, name=name, **options)


def started(marker: str) -> bool:
    return Path(marker + ".started").exists()


def queue_stats(app, name: str = "default"):
    return next((s for s in app.broker.queue_stats() if s.name == name), None)


# == what every pool does ========================================================================

@pytest.mark.parametrize("pool", POOLS)
def test_a_task_runs_and_returns_its_result(app, nodes, pool):
    node = start(nodes, pool, concurrency=2 if pool != "solo" else 1)
    from testapp import add, whoami

    assert add.delay(2, 3).get(timeout=10) == 5
    me = whoami.delay().get(timeout=10)
    assert me["hostname"] == full("w1")
    # prefork runs it in a child; solo and threads in the node's own process, which forks none
    assert (me["pid"] == node.pid) == (pool != "prefork")
    if pool != "prefork":
        assert node.children() == []
    assert f"concurrency:  {2 if pool != 'solo' else 1} ({pool})" in node.log_text()


@pytest.mark.parametrize("pool", POOLS)
def test_retries_run_until_the_task_succeeds(app, nodes, pool):
    start(nodes, pool)
    from testapp import auto_flaky, flaky

    assert flaky.delay(2).get(timeout=10) == 2
    assert auto_flaky.delay(2).get(timeout=10) == 2


@pytest.mark.parametrize("pool", POOLS)
def test_an_eta_task_runs_on_time_while_others_run(app, nodes, pool):
    start(nodes, pool)
    from testapp import add, stamp

    sent = time.time()
    later = stamp.apply_async(countdown=1.0)
    assert add.delay(1, 1).get(timeout=10) == 2  # not held up by the ETA task
    ran = later.get(timeout=10)
    assert sent + 0.95 <= ran < sent + 5


@pytest.mark.parametrize("pool", POOLS)
def test_a_rate_limit_spaces_the_task_out(app, nodes, pool):
    start(nodes, pool)
    from testapp import limited

    times = sorted(r.get(timeout=15) for r in [limited.delay(i) for i in range(4)])
    assert times[-1] - times[0] >= 0.45  # 5/s: four tasks take at least ~0.6 s


@pytest.mark.parametrize("pool", POOLS)
def test_warm_shutdown_waits_for_the_running_task(app, nodes, pool, tmp_path):
    node = start(nodes, pool)
    from testapp import sleep

    marker = str(tmp_path / "done")
    result = sleep.delay(0.8, marker)
    wait_for(lambda: started(marker), 10, message="the task to start")
    node.signal(signal.SIGTERM)
    assert node.wait(15) == 0
    assert Path(marker).exists()
    assert result.get(timeout=5) == 0.8
    assert "Warm shutdown (TERM)" in node.log_text()


@pytest.mark.parametrize("pool", POOLS)
def test_cold_shutdown_returns_an_acks_late_task_and_fails_an_early_acked_one(
        app, nodes, pool, tmp_path):
    node = start(nodes, pool, concurrency=2 if pool != "solo" else 1)
    from testapp import late_sleep, sleep

    late_marker = str(tmp_path / "late")
    late = late_sleep.delay(30, late_marker)
    wait_for(lambda: Path(late_marker + ".runs").exists(), 10, message="the task to start")
    early = None
    if pool != "solo":
        marker = str(tmp_path / "early")
        early = sleep.delay(30, marker)
        wait_for(lambda: started(marker), 10, message="the second task to start")
    begun = time.monotonic()
    node.signal(signal.SIGQUIT)
    assert node.wait(15) == 0
    assert time.monotonic() - begun < 10  # not the 30 s the tasks would take
    assert queue_stats(app).ready == 1  # the acks-late task is back in its queue
    assert late.state == states.PENDING
    if early is not None:
        with pytest.raises(WorkerLostError, match="shut down cold"):
            early.get(timeout=5)


@pytest.mark.parametrize("pool", POOLS)
def test_inspect_active_shows_the_running_task(app, nodes, pool, tmp_path):
    node = start(nodes, pool)
    from testapp import sleep

    marker = str(tmp_path / "job")
    result = sleep.delay(30, marker)
    wait_for(lambda: started(marker), 10, message="the task to start")
    [task] = app.control.inspect(timeout=5).active()[full("w1")]
    assert task["id"] == result.id and task["args"] == [30, marker]
    running_in = int(Path(marker + ".started").read_text())
    assert task["worker_pid"] == running_in
    assert (running_in == node.pid) == (pool != "prefork")
    stats = app.control.inspect(timeout=5).stats()[full("w1")]
    assert stats["pool"]["implementation"] == pool


@pytest.mark.parametrize("pool", POOLS)
def test_revoke_settles_a_held_task_at_once_and_it_never_runs(app, nodes, pool, tmp_path):
    start(nodes, pool)
    from testapp import sleep

    marker = tmp_path / "revoked"
    later = sleep.apply_async((0, str(marker)), countdown=60)
    wait_for(lambda: app.control.inspect().scheduled().get(full("w1")), 10,
             message="the node to hold the ETA task")
    app.control.revoke(later.id, reply=True)
    with pytest.raises(TaskRevokedError, match="revoked before it started"):
        later.get(timeout=10)
    assert not marker.exists()


@pytest.mark.parametrize("pool", POOLS)
def test_a_task_longer_than_the_heartbeat_timeout_keeps_its_reservation(
        app, nodes, pool, tmp_path):
    # The nodes fixture sets a 1 s heartbeat timeout: a node whose heartbeat stopped while
    # its task ran would lose the acks-late message to the other node, which would run it
    # again. The task runs on a thread in solo and threads, so the main loop heartbeats on.
    start(nodes, pool, name="busy")
    from testapp import late_sleep

    marker = str(tmp_path / "long")
    result = late_sleep.delay(2.5, marker)
    wait_for(lambda: Path(marker + ".runs").exists(), 10, message="the task to start")
    nodes.start(name="other", concurrency=1)  # would take over a dead node's reservations
    assert result.get(timeout=15) == 2.5
    assert len(Path(marker + ".runs").read_text().splitlines()) == 1


@pytest.mark.parametrize("pool", POOLS)
def test_task_events_are_sent(app, nodes, pool):
    start(nodes, pool, "-E")
    from testapp import add

    seen: list[dict] = []
    done = threading.Event()
    stop_at = time.monotonic() + 15
    stream = events.listen(app, stop=lambda: done.is_set() or time.monotonic() > stop_at)
    assert next(stream) is None  # subscribed
    result = add.delay(20, 22)
    for event in stream:
        if event is not None and event.get("uuid") == result.id:
            seen.append(event)
            if event["type"] == "task-succeeded":
                done.set()
    assert [e["type"] for e in seen] == ["task-received", "task-started", "task-succeeded"]


# == what only threads and solo do ===============================================================

def test_threads_run_io_bound_tasks_at_the_same_time(app, nodes, tmp_path):
    node = start(nodes, "threads", concurrency=4)
    from testapp import block

    gate = tmp_path / "gate"
    markers = [tmp_path / f"running-{n}" for n in range(4)]
    results = [block.delay(str(gate), str(marker)) for marker in markers]
    # all four run at once: each waits for the gate, which opens only once all have begun
    wait_for(lambda: all(marker.exists() for marker in markers), 15,
             message="four tasks running side by side")
    gate.touch()
    assert [r.get(timeout=15) for r in results] == [node.pid] * 4


def test_solo_runs_one_task_at_a_time(app, nodes, tmp_path):
    node = start(nodes, "solo")
    from testapp import stamp

    marker = str(tmp_path / "runs")
    results = [stamp.delay(marker) for _ in range(5)]
    assert len({r.get(timeout=10) for r in results}) == 5
    assert {line.split()[0] for line in Path(marker).read_text().splitlines()} == {
        str(node.pid)}
    assert "with 1 thread (solo)" in node.log_text()


@pytest.mark.parametrize("pool", IN_PROCESS)
def test_terminating_a_running_task_is_refused_and_it_runs_to_its_end(
        app, nodes, pool, tmp_path, env):
    node = start(nodes, pool)
    from testapp import block

    marker, gate = tmp_path / "job", tmp_path / "gate"
    result = block.delay(str(gate), str(marker))
    wait_for(marker.exists, 10, message="the task to start")
    done = run_fleet("control", "terminate", "KILL", result.id, env=env)
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"cannot terminate {result.id}" in done.stdout + done.stderr
    assert f"in the {pool} pool" in done.stdout + done.stderr
    gate.touch()
    assert result.get(timeout=10) == node.pid  # it stays revoked, but it was running


@pytest.mark.parametrize("pool", IN_PROCESS)
def test_a_tasks_own_time_limit_is_not_applied_and_the_log_says_so(app, nodes, pool):
    node = start(nodes, pool)
    from testapp import hard_limited

    assert hard_limited.apply_async((0.5,), time_limit=0.2).get(timeout=10) == 0.5
    assert "asks for time limits (soft None, hard 0.2) that the " \
           f"{pool} pool cannot apply" in node.log_text()
    remote = app.control.time_limit("testapp.hard_limited", soft=1, hard=2, reply=True)
    assert "cannot apply time limits" in remote[full("w1")]["error"]


def test_threads_grow_and_shrink_and_solo_refuses_to(app, nodes):
    threads = start(nodes, "threads", name="t", concurrency=2)
    solo = start(nodes, "solo", name="s")
    assert app.control.pool_grow(2, destination=[full("t")])[full("t")] == {
        "ok": "pool will grow to 4"}
    stats = app.control.inspect(destination=[full("t")]).stats()[full("t")]
    assert stats["pool"]["max-concurrency"] == 4
    refused = app.control.pool_grow(1, destination=[full("s")])[full("s")]
    assert "the solo pool runs one task at a time" in refused["error"]
    solo.signal(signal.SIGTTIN)
    wait_for(lambda: "TTIN refused" in solo.log_text(), 10, message="the refusal in the log")
    from testapp import add

    assert add.apply_async((1, 2), queue="default").get(timeout=10) == 3
    assert threads.children() == [] and solo.children() == []


# == limits the in-process pools refuse ==========================================================

@pytest.mark.parametrize(("pool", "args", "code", "says"), [
    ("solo", ["--time-limit", "5"], 2, "--time-limit 5 cannot apply to the solo pool"),
    ("threads", ["--soft-time-limit", "5"], 2, "--soft-time-limit 5 cannot apply"),
    ("threads", ["--max-tasks-per-child", "10"], 2, "--max-tasks-per-child 10 cannot apply"),
    ("solo", ["--max-memory-per-child", "1000"], 2, "--max-memory-per-child 1000 cannot"),
    ("solo", ["-c", "4"], 2, "--concurrency 4 cannot apply to the solo pool"),
    ("solo", ["--autoscale", "4,1"], 2, "--autoscale 4,1 cannot apply to the solo pool"),
    ("threads", ["--", "task_time_limit=30"], 78,
     "task_time_limit = 30.0 (after -- on the command line) cannot apply to the threads pool"),
])
def test_a_limit_the_pool_cannot_apply_is_refused_with_one_line(pool, args, code, says,
                                                                 sqlite_url, tmp_path):
    from tests.support import fleet_env

    env = fleet_env(sqlite_url, FLEET_STATE_DIR=str(tmp_path / "state"))
    done = run_fleet("worker", "-A", "testapp", "--pool", pool, *args, env=env)
    assert done.returncode == code, done.stderr
    [line] = done.stderr.strip().splitlines()
    assert says in line and "--pool" in line


def test_a_limit_set_in_the_environment_is_refused_naming_the_setting(sqlite_url, tmp_path):
    from tests.support import fleet_env

    env = fleet_env(sqlite_url, FLEET_STATE_DIR=str(tmp_path / "state"),
                    FLEET_WORKER_POOL="threads", FLEET_WORKER_MAX_TASKS_PER_CHILD="5")
    done = run_fleet("worker", "-A", "testapp", env=env)
    assert done.returncode == 78, done.stderr
    assert "worker_max_tasks_per_child = 5 (from FLEET_WORKER_MAX_TASKS_PER_CHILD) cannot " \
           "apply to the threads pool" in done.stderr
