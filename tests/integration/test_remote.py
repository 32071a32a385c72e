"""Remote control over the broker, with real nodes, on both brokers: inspect, control,
status, durable revokes and events."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from fleet.engine import states
from fleet.exceptions import RemoteError, TaskRevokedError, TimeLimitExceeded
from fleet.nodenames import host_format
from tests.support import APPS, fleet_env, run_fleet, wait_for


def full(name: str) -> str:
    return host_format(f"{name}@%h")


def start_sleeping(app, tmp_path: Path, seconds: float = 30, name: str = "job"):
    """Send testapp.sleep and wait until its child runs it; returns (result, marker)."""
    from testapp import sleep

    marker = str(tmp_path / name)
    result = sleep.delay(seconds, marker)
    wait_for(lambda: Path(marker + ".started").exists(), 10, message="the task to start")
    return result, marker


# == inspect =====================================================================================

def test_ping_returns_every_node_and_returns_early(app, nodes, env):
    for name in ("w1", "w2", "w3"):
        nodes.start(name=name, concurrency=1)
    replies = app.control.ping(timeout=20)
    assert dict(replies) == {full(n): "pong" for n in ("w1", "w2", "w3")}
    assert replies.missing == []
    # every expected node answered: no waiting for the 20 s timeout
    assert replies.elapsed < 10

    done = run_fleet("inspect", "ping", "-t", "20", env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    for name in ("w1", "w2", "w3"):
        assert f"->  {full(name)}: OK" in lines
    assert "    pong" in lines
    assert lines[-2:] == ["", "3 nodes online."]


def test_destination_limits_the_replies_to_that_node(app, nodes, env):
    nodes.start(name="w1", concurrency=1)
    nodes.start(name="w2", concurrency=1)
    done = run_fleet("inspect", "ping", "-d", full("w2"), "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {full("w2"): {"ok": "pong"}}
    assert list(app.control.inspect(destination=[full("w1")]).stats()) == [full("w1")]
    # A name the broker does not know (a typo) is not waited for: with a 60s timeout, the
    # command still returns at once (run_fleet gives up after 30s).
    typo = run_fleet("inspect", "ping", "-d", f"{full('w2')},w9@nowhere", "-t", "60", env=env)
    assert typo.returncode == 0, typo.stderr
    assert "no reply from w9@nowhere: not known to the broker" in typo.stderr
    alone = run_fleet("inspect", "ping", "-d", "w9@nowhere", "-t", "60", env=env)
    assert alone.returncode == 69 and "None of w9@nowhere is known" in alone.stderr


def test_active_shows_the_running_task_while_the_only_child_is_busy(app, nodes, env,
                                                                      tmp_path):
    node = nodes.start(concurrency=1)
    result, marker = start_sleeping(app, tmp_path)
    done = run_fleet("inspect", "active", "--json", env=env)
    assert done.returncode == 0, done.stderr
    [task] = json.loads(done.stdout)[full("w1")]["ok"]
    assert task["id"] == result.id
    assert task["name"] == "testapp.sleep"
    assert task["args"] == [30, marker]
    assert task["worker_pid"] == node.children()[0]
    human = run_fleet("inspect", "active", env=env)
    assert f"->  {full('w1')}: OK" in human.stdout and result.id in human.stdout


def test_reserved_and_scheduled_show_prefetched_and_eta_tasks(app, nodes, tmp_path):
    nodes.start(concurrency=1)
    start_sleeping(app, tmp_path)
    from testapp import add

    waiting = add.delay(1, 1)
    later = add.apply_async((2, 2), countdown=120)
    inspect = app.control.inspect(timeout=5)
    wait_for(lambda: [t["id"] for t in inspect.reserved()[full("w1")]] == [waiting.id], 10,
             message="the prefetched task")
    [entry] = inspect.scheduled()[full("w1")]
    assert entry["request"]["id"] == later.id
    assert entry["eta"] == pytest.approx(time.time() + 120, abs=10)
    states_known = inspect.query_task(waiting.id, later.id)[full("w1")]
    assert states_known[waiting.id][0] == "reserved"
    assert states_known[later.id][0] == "scheduled"


def test_registered_lists_the_apps_tasks(app, nodes, env):
    nodes.start()
    done = run_fleet("inspect", "registered", "--json", env=env)
    assert done.returncode == 0, done.stderr
    names = [line.split()[0] for line in json.loads(done.stdout)[full("w1")]["ok"]]
    assert names == sorted(app.tasks)
    assert "testapp.add" in names


def test_stats_describe_the_node(app, nodes):
    node = nodes.start(concurrency=2)
    from testapp import add

    add.delay(1, 2).get(timeout=10)
    stats = app.control.inspect().stats()[full("w1")]
    assert stats["pid"] == node.pid
    assert stats["uptime"] > 0
    assert sorted(stats["pool"]["processes"]) == sorted(node.children())
    assert stats["pool"]["max-concurrency"] == 2
    assert {"max-tasks-per-child", "timeouts"} <= set(stats["pool"])
    assert stats["total"] == {"testapp.add": 1}
    assert stats["prefetch_count"] == 8
    assert stats["broker"]["transport"] in ("sqlite", "redis")
    assert stats["rusage"]["maxrss_kib"] > 0


def test_conf_and_report_describe_the_nodes_settings(app, nodes, env):
    nodes.start()
    conf = app.control.inspect().conf()[full("w1")]
    assert conf["worker_heartbeat_interval"] == 0.2  # changed by the test's environment
    assert "task_default_queue" not in conf  # only changed settings by default
    everything = app.control.inspect().conf(include_defaults=True)[full("w1")]
    assert everything["task_default_queue"] == "default"
    report = run_fleet("inspect", "report", env=env)
    assert report.returncode == 0, report.stderr
    assert "software -> fleet:" in report.stdout


# == control =====================================================================================

def test_rate_limit_takes_effect_on_later_tasks(app, nodes, env):
    nodes.start(concurrency=1)
    from testapp import add

    done = run_fleet("control", "rate_limit", "testapp.add", "1/h", env=env)
    assert done.returncode == 0, done.stderr
    assert "rate limit of testapp.add set to 1/h" in done.stdout
    first, second = add.delay(1, 1), add.delay(2, 2)
    assert first.get(timeout=10) == 2
    wait_for(lambda: [t["id"] for t in app.control.inspect().reserved()[full("w1")]]
             == [second.id], 10, message="the second task held by the rate limit")
    assert second.state == states.PENDING
    app.control.rate_limit("testapp.add", "0")
    assert second.get(timeout=10) == 4


def test_time_limit_applies_to_tasks_started_later(app, nodes, env):
    nodes.start(concurrency=1)
    from testapp import sleep

    done = run_fleet("control", "time_limit", "testapp.sleep", "0", "0.3", env=env)
    assert done.returncode == 0, done.stderr
    with pytest.raises(TimeLimitExceeded):
        sleep.delay(30).get(timeout=10)


def test_unknown_task_is_an_error_reply_and_a_failing_exit(app, nodes, env):
    nodes.start()
    done = run_fleet("control", "rate_limit", "testapp.nope", "1/s", env=env)
    assert done.returncode == 1
    assert f"->  {full('w1')}: ERROR" in done.stdout
    assert "unknown task 'testapp.nope'" in done.stdout


def test_add_and_cancel_consumer_change_what_the_node_consumes(app, nodes, env):
    nodes.start()
    from testapp import pinned

    done = run_fleet("control", "add_consumer", "pinned", env=env)
    assert done.returncode == 0, done.stderr
    assert pinned.delay(7).get(timeout=10) == 7
    queues = app.control.inspect().active_queues()[full("w1")]
    assert [q["name"] for q in queues] == ["default", "pinned"]

    done = run_fleet("control", "cancel_consumer", "pinned", env=env)
    assert done.returncode == 0, done.stderr
    assert [q["name"] for q in app.control.inspect().active_queues()[full("w1")]] == \
        ["default"]
    left = pinned.delay(8)
    time.sleep(1.0)  # a negative check: long enough for several reserve rounds
    assert left.state == states.PENDING


def test_pool_grow_and_shrink_change_the_child_count(app, nodes, env):
    node = nodes.start(concurrency=1)
    done = run_fleet("control", "pool_grow", "2", env=env)
    assert done.returncode == 0, done.stderr
    wait_for(lambda: len(node.children()) == 3, 10, message="three children")
    app.control.pool_shrink(2)
    wait_for(lambda: len(node.children()) == 1, 10, message="one child")
    assert app.control.inspect().stats()[full("w1")]["pool"]["max-concurrency"] == 1


def test_autoscale_keeps_the_pool_in_its_range(app, nodes):
    node = nodes.start(concurrency=1)
    replies = app.control.autoscale(3, 2)
    assert replies[full("w1")] == {"ok": "autoscale now max=3 min=2"}
    wait_for(lambda: len(node.children()) == 2, 10, message="two children")


def test_pool_restart_replaces_every_child(app, nodes):
    node = nodes.start(concurrency=2)
    before = set(node.children())
    app.control.pool_restart()
    wait_for(lambda: len(node.children()) == 2 and not before & set(node.children()), 10,
             message="two new children")


def test_revoke_before_start_never_runs_and_is_revoked(app, nodes, tmp_path):
    nodes.start(concurrency=1)
    from testapp import sleep

    marker = tmp_path / "revoked"
    result = sleep.apply_async((0, str(marker)), countdown=1.5)
    result.revoke(reply=True)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=10)
    assert result.state == states.REVOKED
    time.sleep(1.0)  # past its ETA: it still never ran
    assert not marker.exists()


def test_revoking_a_held_eta_task_settles_it_at_once(app, nodes):
    nodes.start(concurrency=1)
    from testapp import add

    later = add.apply_async((1, 1), countdown=120)  # within the node's ETA horizon
    wait_for(lambda: app.control.inspect().scheduled().get(full("w1")), 10,
             message="the node to hold the ETA task")
    app.control.revoke(later.id, reply=True)
    with pytest.raises(TaskRevokedError, match="revoked before it started"):
        later.get(timeout=10)  # not after 120 s
    assert app.control.inspect().scheduled()[full("w1")] == []


def test_revoke_then_restart_every_node_still_never_runs(app, nodes, env, tmp_path):
    first = [nodes.start(name="w1", concurrency=1), nodes.start(name="w2", concurrency=1)]
    from testapp import sleep

    marker = tmp_path / "revoked"
    result = sleep.apply_async((0, str(marker)), countdown=3)
    done = run_fleet("control", "revoke", result.id, env=env)
    assert done.returncode == 0, done.stderr
    assert "flagged as revoked" in done.stdout
    for node in first:
        node.signal(signal.SIGTERM)
    for node in first:
        assert node.wait() == 0
    nodes.start(name="w3", concurrency=1)
    nodes.start(name="w4", concurrency=1)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=15)
    assert not marker.exists()
    revoked = app.control.inspect().revoked()
    assert all(result.id in ids for ids in revoked.values()) and len(revoked) == 2


def test_a_revoke_while_no_node_runs_says_it_is_stored_and_holds(app, nodes, env, tmp_path):
    # Regression: the exit-69 message read as if the revoke was lost, yet it is durable.
    from testapp import sleep

    marker = tmp_path / "revoked"
    result = sleep.delay(0, str(marker))
    done = run_fleet("control", "revoke", result.id, env=env)
    assert done.returncode == 69
    assert "The revoke itself is stored in the broker" in done.stderr
    nodes.start(concurrency=1)
    with pytest.raises(TaskRevokedError):
        result.get(timeout=15)
    assert not marker.exists()


def test_terminate_kills_the_running_task(app, nodes, env, tmp_path):
    node = nodes.start(concurrency=1)
    result, marker = start_sleeping(app, tmp_path)
    child = node.children()[0]
    done = run_fleet("control", "terminate", "KILL", result.id, env=env)
    assert done.returncode == 0, done.stderr
    assert f"terminated {result.id} with SIGKILL" in done.stdout
    with pytest.raises(TaskRevokedError, match="terminated"):
        result.get(timeout=10)
    assert not Path(marker).exists()
    wait_for(lambda: child not in node.children(), 10, message="the child to be replaced")
    from testapp import add

    assert add.delay(2, 3).get(timeout=10) == 5  # the node goes on


def test_terminate_with_term_interrupts_the_task_and_keeps_the_child(app, nodes, tmp_path):
    node = nodes.start(concurrency=1)
    result, _ = start_sleeping(app, tmp_path)
    child = node.children()[0]
    app.control.revoke(result.id, terminate=True, reply=True)
    # raised inside the task by SIGTERM; a BaseException, so get() raises it as a
    # RemoteError (a stored result never raises what `except Exception` cannot catch)
    with pytest.raises(RemoteError, match=r"fleet\.exceptions\.Terminated"):
        result.get(timeout=10)
    assert result.state == states.REVOKED
    assert node.children() == [child]


def test_shutdown_stops_the_node_and_reports_ok(app, nodes, env):
    node = nodes.start(name="w1")
    other = nodes.start(name="w2")
    done = run_fleet("control", "shutdown", "-d", full("w1"), env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[:2] == [f"->  {full('w1')}: OK", "    shutting down"]
    assert node.wait() == 0
    assert other.proc.poll() is None


# == no replies ===================================================================================

def test_no_nodes_exits_69_and_says_why(env):
    # Regression: with no node registered at all, ping waited out its whole timeout; it
    # returns at once now (a 60s timeout would outlast run_fleet's 30s limit).
    done = run_fleet("inspect", "ping", "-t", "60", env=env)
    assert done.returncode == 69
    assert "no node replied" in done.stderr
    assert "no node is registered" in done.stderr
    assert "fleet multi status" in done.stderr
    status = run_fleet("status", "-t", "60", env=env)
    assert status.returncode == 69


def test_a_dead_node_is_named_with_when_it_was_last_seen(app, nodes, env):
    node = nodes.start(name="gone")
    node.kill_group()
    done = run_fleet("control", "heartbeat", "-t", "0.5", env=env)
    assert done.returncode == 69
    assert f"Known nodes: {full('gone')}" in done.stderr
    assert "last heartbeat" in done.stderr and "Try a longer --timeout" in done.stderr


# == status and events ============================================================================

def test_status_lists_online_nodes(app, nodes, env):
    nodes.start(name="w1")
    nodes.start(name="w2")
    done = run_fleet("status", "--json", env=env)
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    assert sorted(data) == [full("w1"), full("w2")]
    assert data[full("w1")]["ok"] == "pong" and data[full("w1")]["online"] is True
    human = run_fleet("status", env=env)
    assert human.stdout.splitlines()[-1] == "2 nodes online."


class Lines:
    """Read a process's stream line by line without blocking the test forever."""

    def __init__(self, stream):
        self.queue: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream) -> None:
        for line in stream:
            self.queue.put(line.rstrip("\n"))

    def until(self, predicate, timeout: float = 10.0) -> list[str]:
        seen = []
        deadline = time.monotonic() + timeout
        while not seen or not predicate(seen[-1]):
            try:
                seen.append(self.queue.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                raise AssertionError(f"timed out; got: {seen}") from None
        return seen


def test_events_dump_shows_a_task_received_started_and_succeeded(app, nodes, broker_url,
                                                                   tmp_path):
    nodes.start("-E")
    env = fleet_env(broker_url, FLEET_STATE_DIR=str(tmp_path / "state"))
    dump = subprocess.Popen([sys.executable, "-m", "fleet", "events", "--dump"], cwd=APPS,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        Lines(dump.stderr).until(lambda line: "listening on" in line)
        out = Lines(dump.stdout)
        from testapp import add

        result = add.delay(20, 22)
        assert result.get(timeout=10) == 42
        lines = out.until(lambda line: "task-succeeded" in line and result.id in line)
        mine = [line for line in lines if result.id in line]
        kinds = [line.split()[2] for line in mine]
        assert kinds == ["task-received", "task-started", "task-succeeded"]
        assert "args=[20, 22]" in mine[0]
        assert "result=" in mine[2] and "42" in mine[2] and "runtime=" in mine[2]
        assert mine[0].split()[1] == full("w1")
    finally:
        os.killpg(dump.pid, signal.SIGKILL)
        dump.wait(5)


def test_task_events_only_when_enabled_worker_events_always(app, nodes, broker_url,
                                                             tmp_path):
    nodes.start()  # no -E; the nodes fixture sets heartbeats every 0.2 s
    env = fleet_env(broker_url, FLEET_STATE_DIR=str(tmp_path / "state"))
    dump = subprocess.Popen([sys.executable, "-m", "fleet", "events", "--dump", "--json"],
                            cwd=APPS, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        Lines(dump.stderr).until(lambda line: "listening on" in line)
        out = Lines(dump.stdout)
        from testapp import add

        quiet = add.delay(1, 1)
        quiet.get(timeout=10)
        lines = out.until(lambda line: json.loads(line)["type"] == "worker-heartbeat")
        assert app.control.enable_events()[full("w1")] == {"ok": "task events enabled"}
        loud = add.delay(2, 2)
        lines += out.until(lambda line: json.loads(line).get("type") == "task-succeeded")
        seen = [json.loads(line) for line in lines]
        assert {e.get("uuid") for e in seen if e["type"].startswith("task-")} == {loud.id}
    finally:
        os.killpg(dump.pid, signal.SIGKILL)
        dump.wait(5)


def test_an_unreachable_broker_exits_69_and_says_so(tmp_path):
    env = fleet_env("redis://127.0.0.1:1/0", FLEET_STATE_DIR=str(tmp_path / "state"))
    done = run_fleet("inspect", "ping", env=env)
    assert done.returncode == 69
    assert "the broker redis://127.0.0.1:1/0 was not reachable" in done.stderr


def test_events_report_sent_failed_and_rejected_tasks(app, nodes, broker_url, tmp_path):
    nodes.start("-E")
    env = fleet_env(broker_url, FLEET_STATE_DIR=str(tmp_path / "state"))
    # (--json alone implies --dump: it used to ask for a terminal for the live view)
    dump = subprocess.Popen([sys.executable, "-m", "fleet", "events", "--json"],
                            cwd=APPS, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    app.conf.update(task_send_sent_event=True)
    try:
        Lines(dump.stderr).until(lambda line: "listening on" in line)
        out = Lines(dump.stdout)
        from testapp import fail

        failed = fail.delay("kaboom")
        unknown = app.send_task("testapp.no_such_task")
        wanted = {"task-failed", "task-rejected"}  # in either order
        seen: list[dict] = []
        while wanted:
            seen += [json.loads(line) for line in
                     out.until(lambda line: json.loads(line)["type"] in wanted)]
            wanted.discard(seen[-1]["type"])
        by_type = {(e["type"], e.get("uuid")): e for e in seen}
        assert ("task-sent", failed.id) in by_type
        assert "kaboom" in by_type[("task-failed", failed.id)]["exception"]
        rejected = [e for e in seen if e["type"] == "task-rejected"]
        assert "unknown task 'testapp.no_such_task'" in rejected[0]["reason"]
        assert unknown.id in rejected[0]["reason"]
    finally:
        app.conf.update(task_send_sent_event=False)
        os.killpg(dump.pid, signal.SIGKILL)
        dump.wait(5)
