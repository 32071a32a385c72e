"""Task execution semantics with real nodes on both brokers: pool limits (max tasks, max
memory, time limits, lost children, autoscale), retries, countdown/ETA/expires, rate limits
and prefetch."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from fleet.engine import states
from fleet.exceptions import (
    MaxRetriesExceededError,
    SoftTimeLimitExceeded,
    TaskRevokedError,
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


def test_a_replacement_child_that_never_reports_ready_is_killed_and_retried(
        app, nodes, tmp_path):
    flag = tmp_path / "hang-boot"
    node = nodes.start("--max-tasks-per-child", "1", concurrency=1,
                       env={"TESTAPP_HANG_BOOT": str(flag),
                            "FLEET_WORKER_PROC_ALIVE_TIMEOUT": "0.5"})
    from testapp import add

    assert add.delay(1, 1).get(timeout=10) == 2
    flag.write_text("")
    waiting = add.delay(2, 2)
    wait_for(lambda: "did not report ready within 0.5s: killing it" in node.log_text(), 10,
             message="the hung child to be killed")
    flag.unlink()
    assert waiting.get(timeout=20) == 4
    assert add.delay(3, 3).get(timeout=20) == 6
    assert "killed by signal 9 (KILL)" in node.log_text()


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


def test_a_per_task_hard_limit(app, nodes):
    nodes.start(concurrency=1)
    from testapp import add, over_its_own_limit

    with pytest.raises(TimeLimitExceeded, match=r"0\.3s"):
        over_its_own_limit.delay().get(timeout=10)
    assert add.delay(1, 1).get(timeout=10) == 2


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


def test_a_segfaulting_child_fails_its_task_and_is_replaced(app, nodes):
    nodes.start(concurrency=1)
    from testapp import add, segfault

    with pytest.raises(WorkerLostError, match=r"worker lost: signal 11 \(SEGV\)"):
        segfault.delay().get(timeout=10)
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


# -- retries -------------------------------------------------------------------------------------

def test_retry_with_countdown_is_retry_in_between_and_reaches_success(app, nodes):
    nodes.start()
    from testapp import retry_later

    result = retry_later.delay(2, 1.0)
    wait_for(lambda: result.state == states.RETRY, 10, message="RETRY between attempts")
    assert isinstance(result.result, Exception) and "not yet" in str(result.result)
    assert result.get(timeout=15) == 2  # request.retries == n on the last attempt
    assert result.state == states.SUCCESS


def test_autoretry_for_retries_with_capped_exponential_backoff(app, nodes):
    node = nodes.start()
    from testapp import auto_flaky

    assert auto_flaky.delay(3).get(timeout=15) == 3
    log = node.log_text()
    # retry_backoff=0.1 doubles per attempt, capped by retry_backoff_max=0.3 (no jitter)
    delays = [line.split("retry in ")[1].split("s:")[0] for line in log.splitlines()
              if "testapp.auto_flaky[" in line and "retry in " in line]
    assert delays == ["0.1", "0.2", "0.3"], delays


def test_autoretry_gives_up_with_the_original_exception(app, nodes):
    nodes.start()
    from testapp import CustomError, auto_flaky

    with pytest.raises(CustomError, match="attempt 5"):
        auto_flaky.delay(10).get(timeout=15)  # max_retries=4: five attempts


def test_after_the_last_retry_the_original_exception_or_max_retries_exceeded(app, nodes):
    nodes.start()
    from testapp import CustomError, retry_forever

    with pytest.raises(CustomError, match="still broken"):
        retry_forever.delay().get(timeout=10)
    result = retry_forever.delay(False)
    with pytest.raises(MaxRetriesExceededError, match="exceeded its 2 retries"):
        result.get(timeout=10)
    assert result.state == states.FAILURE


def test_self_request_describes_the_call(app, nodes):
    nodes.start(name="reqnode")
    from testapp import request_info

    eta = time.time() + 0.5
    result = request_info.apply_async((1, "two"), {"k": 3}, eta=eta, queue="default")
    info = result.get(timeout=10)
    assert info["id"] == result.id and info["retries"] == 0
    assert (info["args"], info["kwargs"]) == ([1, "two"], {"k": 3})
    assert info["hostname"].startswith("reqnode@")
    assert info["eta"] == pytest.approx(eta)
    assert info["delivery_info"]["queue"] == "default"


# -- countdown, ETA, expires ---------------------------------------------------------------------

def test_countdown_runs_on_time_without_blocking_the_tasks_behind_it(app, nodes):
    nodes.start(concurrency=1)  # prefetch 4: ten ETA tasks must not fill it
    from testapp import add, stamp

    sent = time.time()
    later = [stamp.apply_async(countdown=2) for _ in range(10)]
    assert [add.delay(i, i).get(timeout=10) for i in range(5)] == [0, 2, 4, 6, 8]
    assert time.time() < sent + 2  # the adds did not wait for the ETA tasks
    ran = [result.get(timeout=15) for result in later]
    assert min(ran) >= sent + 2
    assert max(ran) < sent + 2 + 1.5  # "at, not much after": the node held them


def test_an_eta_task_held_by_a_node_survives_its_sigkill_and_runs_once_elsewhere(
        app, nodes, tmp_path):
    from tests.integration.test_delivery import queue

    first = nodes.start(name="first", concurrency=1)
    from testapp import stamp

    runs = tmp_path / "runs"
    sent = time.time()
    result = stamp.apply_async((str(runs),), countdown=2)
    wait_for(lambda: queue(app).reserved == 1, 10, message="the first node to hold it")
    first.kill_group()
    second = nodes.start(name="second", concurrency=1)
    assert result.get(timeout=15) >= sent + 2
    [line] = _lines(runs)
    assert int(line.split()[0]) in second.children()


def test_an_eta_longer_than_the_heartbeat_timeout_runs_exactly_once(app, nodes, tmp_path):
    nodes.start(name="a", concurrency=1)
    nodes.start(name="b", concurrency=1)
    from testapp import stamp

    runs = tmp_path / "runs"
    results = [stamp.apply_async((str(runs),), countdown=2.5) for _ in range(4)]
    for result in results:
        result.get(timeout=15)
    time.sleep(1.5)  # more heartbeats and recoveries: nothing is delivered again
    assert len(_lines(runs)) == 4


def test_an_eta_beyond_the_horizon_waits_in_the_broker_not_in_a_node(app, nodes):
    from tests.integration.test_delivery import queue

    nodes.start(env={"FLEET_WORKER_ETA_HORIZON": "0.5"})
    from testapp import add, stamp

    sent = time.time()
    result = stamp.apply_async(countdown=2)
    assert add.delay(1, 1).get(timeout=10) == 2  # the node polled the queue since
    stats = queue(app)
    assert (stats.scheduled, stats.reserved) == (1, 0)
    assert result.get(timeout=10) >= sent + 2


def test_warm_shutdown_returns_a_held_eta_task_which_runs_on_time_elsewhere(
        app, nodes, tmp_path):
    from tests.integration.test_delivery import queue

    first = nodes.start(name="first")
    from testapp import stamp

    runs = tmp_path / "runs"
    sent = time.time()
    result = stamp.apply_async((str(runs),), countdown=2)
    wait_for(lambda: queue(app).reserved == 1, 10, message="the node to hold it")
    first.signal(signal.SIGTERM)
    assert first.wait(15) == 0
    nodes.start(name="second")
    assert result.get(timeout=15) >= sent + 2
    assert len(_lines(runs)) == 1


def test_naive_eta_is_in_the_timezone_setting(app):
    from datetime import UTC, datetime, timedelta

    from fleet.engine.task import build_message

    wall = datetime(2030, 1, 1, 12, 0, 0)
    app.conf.update(timezone="UTC")
    assert build_message(app, "testapp.add", (), {}, {"eta": wall}).eta == \
        datetime(2030, 1, 1, 12, tzinfo=UTC).timestamp()
    app.conf.update(timezone="Asia/Tokyo")  # UTC+9, no daylight saving
    try:
        msg = build_message(app, "testapp.add", (), {},
                            {"eta": wall, "expires": wall + timedelta(hours=1)})
    finally:
        app.conf.update(timezone="UTC")
    assert msg.eta == datetime(2030, 1, 1, 3, tzinfo=UTC).timestamp()
    assert msg.expires == msg.eta + 3600


def test_an_expired_task_is_revoked_with_the_reason(app, nodes):
    from datetime import UTC, datetime, timedelta

    from testapp import add

    past = add.apply_async((1, 1), expires=datetime.now(UTC) - timedelta(seconds=1))
    # due after its expiry: it waits for its eta, then is refused
    late = add.apply_async((2, 2), countdown=0.5, expires=0.2)
    nodes.start()
    for result in (past, late):
        with pytest.raises(TaskRevokedError, match=r"expired at .* before it started"):
            result.get(timeout=10)
        assert result.state == states.REVOKED
        assert app.backend.get_meta(result.id)["reason"] == "expired"



# -- rate limits and prefetch --------------------------------------------------------------------

def test_a_rate_limit_spaces_its_task_out_while_other_tasks_run_freely(app, nodes):
    nodes.start(concurrency=2)
    from testapp import add, limited

    sent = time.time()
    limited_results = [limited.delay(i) for i in range(20)]
    free = add.delay(1, 1)
    assert free.get(timeout=10) == 2
    free_done = time.time()
    ran = sorted(result.get(timeout=20) for result in limited_results)
    # a one-token bucket refilled 5 times a second: 20 tasks take about 4 s (19 intervals)
    assert ran[-1] - ran[0] >= 19 / 5 - 0.3
    assert ran[-1] - ran[0] < 19 / 5 + 2
    assert free_done < ran[5]  # the unlimited task did not queue behind the limited ones
    assert free_done - sent < 2


def test_a_long_task_holds_no_prefetched_task_hostage_while_another_node_is_idle(
        app, nodes, tmp_path):
    from testapp import add, block

    from tests.integration.test_delivery import queue

    gate = tmp_path / "gate"
    long = block.delay(str(gate), str(tmp_path / "started"))
    waiting = [add.delay(i, 1) for i in range(3)]
    nodes.start(name="busy", concurrency=1)  # prefetch multiplier 4: reserves all four
    wait_for((tmp_path / "started").exists, 10, message="the long task to start")
    wait_for(lambda: queue(app).reserved == 4, 10, message="the busy node to prefetch")
    nodes.start(name="idle", concurrency=1)
    try:
        assert [r.get(timeout=10) for r in waiting] == [1, 2, 3]
        assert not long.ready()  # they ran while the long task still held its node
    finally:
        gate.write_text("")
    long.get(timeout=10)


# -- autoscale -----------------------------------------------------------------------------------

def test_autoscale_grows_while_tasks_wait_and_shrinks_after_the_keepalive(app, nodes, tmp_path):
    node = nodes.start("--autoscale", "3,1", concurrency=1,
                       env={"FLEET_WORKER_AUTOSCALE_KEEPALIVE": "0.5"})
    assert len(node.children()) == 1
    from testapp import block

    gate = tmp_path / "gate"
    markers = [tmp_path / f"started-{i}" for i in range(3)]
    results = [block.delay(str(gate), str(marker)) for marker in markers]
    # three long tasks run at once: the pool grew to its maximum
    wait_for(lambda: all(marker.exists() for marker in markers), 10,
             message="three tasks running at once")
    assert len(node.children()) == 3
    node.signal(signal.SIGTTIN)
    wait_for(lambda: "TTIN refused" in node.log_text(), 5, message="the refusal")
    assert "over the autoscale maximum of 3 (--autoscale 3,1)" in node.log_text()
    gate.write_text("")
    assert len({r.get(timeout=10) for r in results}) == 3
    wait_for(lambda: len(node.children()) == 1, 10, message="the pool back to its minimum")
    assert "scaling down from 3 to 1 children" in node.log_text()
    node.signal(signal.SIGTTOU)
    wait_for(lambda: "TTOU refused" in node.log_text(), 5, message="the refusal")
    assert len(node.children()) == 1


def test_an_invalid_autoscale_range_is_a_usage_error(env):
    from tests.support import run_fleet

    done = run_fleet("worker", "-A", "testapp", "--autoscale", "many", env=env)
    assert done.returncode == 2
    assert "invalid autoscale range 'many'" in done.stderr


# -- health: alive but not consuming -------------------------------------------------------------

def test_worker_check_tells_a_consuming_node_from_a_stopped_one(app, nodes, env, tmp_path):
    import json

    from tests.support import run_fleet

    pidfile = str(tmp_path / "w1.pid")
    node = nodes.start("--pidfile", pidfile)
    env = {**env, "FLEET_WORKER_HEARTBEAT_TIMEOUT": "1.0"}
    check = ("worker", "-A", "testapp", "-n", "w1@%h", "--pidfile", pidfile, "--check")
    done = run_fleet(*check, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    assert ": OK: consuming default" in done.stdout
    report = json.loads(run_fleet(*check, "--json", env=env).stdout)
    assert report["ok"] and report["pid"] == node.pid and report["info"]["ready"]
    node.signal(signal.SIGSTOP)  # alive, but its loop no longer runs
    try:
        def stale():
            done = run_fleet(*check, env=env)
            return done.returncode == 1 and done

        done = wait_for(stale, 10, interval=0.2, message="the check to notice")
        assert ": NOT CONSUMING: no heartbeat for" in done.stdout
    finally:
        node.signal(signal.SIGCONT)
    wait_for(lambda: run_fleet(*check, env=env).returncode == 0, 10, interval=0.2,
             message="healthy again")
    missing = run_fleet("worker", "-A", "testapp", "-n", "nobody@%h", "--check", env=env)
    assert missing.returncode == 1 and "no node of that name" in missing.stdout


# -- delivery guarantees when a node dies --------------------------------------------------------

def test_sigkill_of_a_node_reruns_its_acks_late_task_elsewhere_within_10s_by_default(
        app, nodes, tmp_path):
    defaults = {"FLEET_WORKER_HEARTBEAT_INTERVAL": "2.0", "FLEET_WORKER_HEARTBEAT_TIMEOUT": "8.0"}
    victim = nodes.start(name="victim", concurrency=1, env=defaults)
    from testapp import late_sleep

    marker = str(tmp_path / "late")
    late_sleep.delay(30, marker)
    wait_for(lambda: Path(marker + ".runs").exists(), 10, message="the first run")
    rescuer = nodes.start(name="rescuer", concurrency=1, env=defaults)
    victim.kill_group()
    killed = time.monotonic()
    wait_for(lambda: len(_lines(Path(marker + ".runs"))) == 2, 10,
             message="the acks-late task to run again on the other node within 10 s")
    assert time.monotonic() - killed < 10
    assert int(_lines(Path(marker + ".runs"))[1]) in rescuer.children()


def test_a_dead_node_loses_nothing_silently(app, nodes, tmp_path):
    from testapp import add, block

    from tests.integration.test_delivery import queue

    gate = tmp_path / "gate"
    running = block.apply_async((str(gate), str(tmp_path / "started")), track_started=True)
    prefetched = [add.delay(i, i) for i in range(3)]
    # (a long prefetch timeout: the node keeps its prefetched tasks behind the long one)
    victim = nodes.start(name="victim", concurrency=1,
                         env={"FLEET_WORKER_PREFETCH_TIMEOUT": "60"})
    wait_for(lambda: running.state == states.STARTED, 10, message="the early-acked task to start")
    wait_for(lambda: queue(app).reserved == 4, 10, message="three prefetched")
    victim.kill_group()
    nodes.start(name="rescuer", concurrency=1)
    # prefetched-but-not-started tasks went back to their queue and ran elsewhere...
    assert [r.get(timeout=15) for r in prefetched] == [0, 2, 4]
    # ...and the early-acked task that was running is reported, not silently dropped
    with pytest.raises(WorkerLostError, match="died while the task ran"):
        running.get(timeout=10)
    gate.write_text("")
