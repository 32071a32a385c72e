"""The dashboard's HTTP API on the in-memory broker: what every page's JSON holds, who may
ask, and that nothing changes without the CSRF token."""

from __future__ import annotations

import base64
import json
import os
import time
import uuid

import pytest
from starlette.testclient import TestClient

from fleet import Fleet
from fleet.dashboard.app import create_app
from fleet.dashboard.ingest import Ingester
from fleet.dashboard.settings import DashboardSettings
from fleet.engine.results import exception_meta, success_meta
from fleet.engine.transport.base import ConsumerInfo, Outgoing
from tests.support import wait_for

BASE = "http://127.0.0.1:5555"


def make_app(tmp_path, users=None, prefix=""):
    fleet_app = Fleet("dash", broker=f"memory://dash-{uuid.uuid4().hex}")
    settings = DashboardSettings(users=users or {}, url_prefix=prefix,
                                 history_file=tmp_path / "dashboard.db")
    application = create_app(fleet_app, settings, ingest=False)
    board = application.state.dashboard
    board.ingester = Ingester(fleet_app, board.history, settings, board.hub)
    board.ingester.on_batch.append(board.metrics.observe)
    return fleet_app, board, application


@pytest.fixture
def dash(tmp_path):
    fleet_app, board, application = make_app(tmp_path)
    with TestClient(application, base_url=BASE) as client:
        client.board, client.fleet = board, fleet_app
        yield client
    fleet_app.close()


def csrf(client):
    return {"X-CSRF-Token": client.board.guard.csrf_token("")}


def register_node(fleet_app, name="w1@host", queues=("default",), **info):
    fleet_app.broker.register(ConsumerInfo(
        f"{name}#1", name, list(queues), os.getpid(), "host",
        {"active": 1, "processed": 41, "concurrency": 2, "loadavg": [0.5, 0.4, 0.3],
         "state": "running", "started": time.time() - 60, "freq": 2.0, **info}))


def task_events(task_id, name="dash.add", outcome="task-succeeded", node="w1@host", at=None):
    at = at or time.time()
    done = {"type": outcome, "uuid": task_id, "name": name, "node": node, "timestamp": at + 0.2,
            "runtime": 0.05}
    done.update({"result": 3} if outcome == "task-succeeded" else {"exception": "boom"})
    return [{"type": "task-received", "uuid": task_id, "name": name, "node": node,
             "timestamp": at, "args": [1, 2], "kwargs": {"z": 1}, "retries": 0,
             "queue": "default"},
            {"type": "task-started", "uuid": task_id, "name": name, "node": node,
             "timestamp": at + 0.1}, done]


def test_the_overview_lists_nodes_queues_and_task_counts(dash):
    register_node(dash.fleet)
    dash.fleet.broker.put([Outgoing("m1", "default", "{}")])
    dash.board.ingester.fold(task_events("t1") + task_events("t2", outcome="task-failed"))
    data = dash.get("/api/overview").json()
    (node,) = data["nodes"]
    assert node["node"] == "w1@host" and node["state"] == "online" and node["pid"] == os.getpid()
    assert node["host"] == "host" and node["concurrency"] == 2 and node["active"] == 1
    assert node["processed"] == 41 and node["queues"] == ["default"]
    assert 59 <= node["uptime"] < 120 and node["loadavg"] == [0.5, 0.4, 0.3]
    assert node["last_heartbeat"] > 0
    assert {"queue": "default", "ready": 1, "scheduled": 0, "reserved": 0,
            "consumers": 1} in data["queues"]
    assert data["tasks"]["SUCCESS"] == 1 and data["tasks"]["FAILURE"] == 1
    assert dash.get("/api/nodes").json()[0]["node"] == "w1@host"
    assert dash.get("/api/queues").json()[0]["queue"] == "default"


def test_the_task_list_filters_and_pages(dash):
    for i in range(12):
        dash.board.ingester.fold(task_events(f"t{i:02d}", name="dash.mul" if i % 2 else
                                             "dash.add", node=f"w{i % 3}@host"))
    page = dash.get("/api/tasks", params={"limit": 5}).json()
    assert page["total"] == 12 and [t["id"] for t in page["tasks"]] == \
        ["t11", "t10", "t09", "t08", "t07"]
    older = dash.get("/api/tasks", params={"limit": 5, "before": page["older"]}).json()
    assert older["tasks"][0]["id"] == "t06" and older["newer"] is not None
    muls = dash.get("/api/tasks", params={"name": "dash.mul", "node": "w1@host"}).json()
    assert {t["id"] for t in muls["tasks"]} == {"t01", "t07"}
    assert dash.get("/api/tasks", params={"state": "SUCCESS"}).json()["total"] == 12
    refused = dash.get("/api/tasks", params={"state": "DONE"})
    assert refused.status_code == 400 and "unknown state" in refused.json()["error"]
    filters = dash.get("/api/task-filters").json()
    assert filters == {"names": ["dash.add", "dash.mul"],
                       "nodes": ["w0@host", "w1@host", "w2@host"]}


def test_task_detail_shows_arguments_result_and_traceback(dash):
    dash.board.ingester.fold(task_events("ok1") + task_events("bad1", outcome="task-failed"))
    try:
        raise ValueError("boom")
    except ValueError as exc:
        failure = exception_meta("bad1", "FAILURE", exc, "Traceback (most recent call last):\n"
                                 "  ...\nValueError: boom\n", task="dash.add", node="w1@host")
    dash.fleet.backend.save([success_meta("ok1", 3, task="dash.add", node="w1@host"), failure])
    ok = dash.get("/api/tasks/ok1").json()
    assert ok["state"] == "SUCCESS" and ok["result"]["result"] == 3
    assert ok["task"]["args"] == [1, 2] and ok["task"]["kwargs"] == {"z": 1}
    assert ok["node"] == "w1@host" and ok["retries"] == 0 and ok["can_resend"]
    bad = dash.get("/api/tasks/bad1").json()
    assert bad["state"] == "FAILURE" and bad["result"]["exc_type"] == "ValueError"
    assert "ValueError: boom" in bad["result"]["traceback"]
    missing = dash.get("/api/tasks/nope")
    assert missing.status_code == 404 and "no task nope" in missing.json()["error"]


def test_a_post_without_the_csrf_token_changes_nothing(dash):
    dash.fleet.broker.put([Outgoing("m1", "default", "{}")])
    for path, body in (("/api/queues/default/purge", {"confirm": "default"}),
                       ("/api/tasks/t1/revoke", {}), ("/api/nodes/w1@host/shutdown", {})):
        refused = dash.post(path, json=body)
        assert refused.status_code == 403 and "CSRF" in refused.json()["error"]
        wrong = dash.post(path, json=body, headers={"X-CSRF-Token": "0" * 64})
        assert wrong.status_code == 403
    assert dash.get("/api/queues").json()[0]["ready"] == 1
    assert dash.get("/api/tasks/t1").status_code == 404  # (no revoke was stored either)


def test_purging_needs_the_queue_name_as_confirmation(dash):
    dash.fleet.broker.put([Outgoing(f"m{i}", "default", "{}") for i in range(3)])
    unconfirmed = dash.post("/api/queues/default/purge", json={}, headers=csrf(dash))
    assert unconfirmed.status_code == 400 and "confirmation" in unconfirmed.json()["error"]
    done = dash.post("/api/queues/default/purge", json={"confirm": "default"},
                     headers=csrf(dash))
    assert done.json() == {"queue": "default", "removed": 3, "reserved_left": 0}
    unknown = dash.post("/api/queues/nope/purge", json={"confirm": "nope"}, headers=csrf(dash))
    assert unknown.status_code == 404


def test_revoke_is_stored_durably_even_with_no_node_up(dash):
    done = dash.post("/api/tasks/t1/revoke", json={"terminate": False}, headers=csrf(dash))
    assert done.status_code == 200 and done.json()["stored"]
    assert dash.fleet.broker.get_value("revoked:t1") is not None
    bad = dash.post("/api/tasks/t1/revoke", json={"terminate": True, "signal": "USR1"},
                    headers=csrf(dash))
    assert bad.status_code == 400 and "does not stop a task" in bad.json()["error"]


def test_node_actions_are_checked_by_the_command_registry(dash):
    register_node(dash.fleet)
    unknown = dash.post("/api/nodes/w1@host/reboot", json={}, headers=csrf(dash))
    assert unknown.status_code == 404 and "unknown node action" in unknown.json()["error"]
    bad_rate = dash.post("/api/nodes/w1@host/rate_limit", json={"task": "x", "rate": "fast"},
                         headers=csrf(dash))
    assert bad_rate.status_code == 400 and "RATE" in bad_rate.json()["error"]
    nobody = dash.post("/api/nodes/w9@host/pool_grow", json={"n": 1}, headers=csrf(dash))
    assert nobody.status_code == 404 and "not known to the broker" in nobody.json()["error"]
    commands = {c["name"]: c for c in dash.get("/api/node-commands").json()}
    assert set(commands) >= {"rate_limit", "time_limit", "pool_grow", "pool_shrink",
                             "autoscale", "add_consumer", "cancel_consumer", "shutdown"}
    assert [a["name"] for a in commands["autoscale"]["arguments"]] == ["max", "min"]
    assert dash.get("/api/nodes/w9@host").status_code == 404


def test_send_again_repeats_name_arguments_and_queue(dash):
    dash.board.ingester.fold(task_events("bad1", outcome="task-failed"))
    done = dash.post("/api/tasks/bad1/resend", json={}, headers=csrf(dash))
    new_id = done.json()["new_id"]
    assert done.status_code == 200 and new_id != "bad1"
    assert dash.get("/api/queues").json() == [{"queue": "default", "ready": 1, "scheduled": 0,
                                               "reserved": 0, "consumers": 0}]
    again = dash.get(f"/api/tasks/{new_id}").json()
    assert again["parent"] == {"id": "bad1", "name": "dash.add", "state": "FAILURE",
                               "relation": "re-send of"}
    assert again["task"]["args"] == [1, 2] and again["task"]["kwargs"] == {"z": 1}
    assert [c["id"] for c in dash.get("/api/tasks/bad1").json()["children"]] == [new_id]


def test_send_again_refuses_arguments_the_events_clipped(dash):
    dash.board.ingester.fold([{"type": "task-received", "uuid": "big", "name": "dash.add",
                               "timestamp": time.time(), "args": "[1, 2, ...",
                               "kwargs": {}}])
    refused = dash.post("/api/tasks/big/resend", json={}, headers=csrf(dash))
    assert refused.status_code == 409 and "too long" in refused.json()["error"]
    assert not dash.get("/api/tasks/big").json()["can_resend"]


def test_workflow_parent_and_children_when_the_events_carry_them(dash):
    dash.board.ingester.fold([
        {"type": "task-received", "uuid": "p", "name": "a", "timestamp": 1.0},
        {"type": "task-received", "uuid": "c", "name": "b", "timestamp": 2.0,
         "parent_id": "p", "root_id": "p"}])
    child = dash.get("/api/tasks/c").json()
    assert child["parent"]["id"] == "p" and child["parent"]["relation"] == "parent"
    assert child["root_id"] == "p"
    assert dash.get("/api/tasks/p").json()["children"][0]["id"] == "c"


def test_metrics_in_prometheus_text(dash):
    register_node(dash.fleet)
    dash.fleet.broker.put([Outgoing("m1", "default", "{}")])
    dash.board.ingester.fold(task_events("t1") + task_events("t2", outcome="task-failed"))
    response = dash.get("/metrics")
    text = response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert 'fleet_tasks{name="dash.add",state="SUCCESS"} 1.0' in text
    assert 'fleet_tasks{name="dash.add",state="FAILURE"} 1.0' in text
    assert 'fleet_queue_length{kind="ready",queue="default"} 1.0' in text
    assert 'fleet_queue_consumers{queue="default"} 1.0' in text
    assert "fleet_nodes_online 1.0" in text and 'fleet_node_up{node="w1@host"} 1.0' in text
    assert 'fleet_task_runtime_seconds_count{name="dash.add"} 2.0' in text
    assert 'fleet_task_events_total{type="task-received"} 2.0' in text


def test_health_says_whether_the_broker_answers_and_events_are_read(dash):
    stopped = dash.get("/healthz")
    assert stopped.status_code == 503 and stopped.json()["ingesting"] is False
    dash.board.ingester.start()
    try:
        wait_for(lambda: dash.board.ingester.listening, message="the ingester to listen")
        response = dash.get("/healthz")
        assert response.status_code == 200 and response.json()["broker"] == "ok"
    finally:
        dash.board.ingester.stop()


def test_charts_and_beat(dash, tmp_path):
    dash.board.ingester.fold(task_events("t1"))
    dash.board.ingester.chores()
    data = dash.get("/api/charts", params={"window": "15m"}).json()
    assert sum(data["counts"]["succeeded"]) == 1 and data["bucket_seconds"] == 10
    assert dash.get("/api/charts", params={"window": "2y"}).status_code == 400
    dash.fleet.conf.update(beat_schedule={"tick": {"task": "dash.add", "schedule": 30.0,
                                                   "args": [1, 2]}})
    (entry,) = dash.get("/api/beat").json()
    assert entry["name"] == "tick" and entry["task"] == "dash.add"
    assert entry["last_run"] is None and entry["next_run"]


def test_live_updates_arrive_on_the_event_stream(dash):
    with dash.stream("GET", "/api/stream") as stream:
        lines = stream.iter_lines()
        assert next(line for line in lines if line.startswith("data:")) == \
            'data: {"kind": "hello"}'
        dash.board.ingester.fold(task_events("live1"))
        update = json.loads(next(line for line in lines if line.startswith("data:"))[5:])
        dash.board.stopping = lambda: True  # (ends the stream, as a shutdown does)
    assert update["kind"] == "update" and update["tasks"][0]["id"] == "live1"


def test_pages_are_shells_with_the_token_and_only_local_assets(dash):
    page = dash.get("/tasks")
    assert page.status_code == 200 and 'data-page="tasks"' in page.text
    assert dash.board.guard.csrf_token("") in page.text
    assert "http://" not in page.text and "https://" not in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    chart_lib = dash.get("/static/uplot/uPlot.iife.min.js")
    assert chart_lib.status_code == 200 and "uPlot" in chart_lib.text
    assert "MIT" in dash.get("/static/uplot/LICENSE").text
    for path in ("/", "/tasks/abc", "/nodes/w1@host", "/charts", "/beat"):
        assert dash.get(path).status_code == 200


def test_without_logins_only_loopback_hosts_and_same_origin_posts_are_served(dash):
    rebound = dash.get("/api/overview", headers={"Host": "evil.example:5555"})
    assert rebound.status_code == 403 and "loopback" in rebound.json()["error"]
    assert dash.get("/api/overview", headers={"Host": "localhost:5555"}).status_code == 200
    foreign = dash.post("/api/tasks/t1/revoke", json={}, headers={
        **csrf(dash), "Origin": "http://evil.example"})
    assert foreign.status_code == 403 and "another origin" in foreign.json()["error"]


@pytest.fixture
def guarded(tmp_path):
    fleet_app, board, application = make_app(tmp_path, users={"admin": "s3cret"})
    with TestClient(application, base_url="http://dash.example:5555") as client:
        client.board, client.fleet = board, fleet_app
        yield client
    fleet_app.close()


def login(client, password="s3cret", next_url="/tasks"):
    token = client.board.guard.csrf_token(None)
    return client.post("/login", data={"username": "admin", "password": password,
                                       "csrf_token": token, "next": next_url},
                       follow_redirects=False)


def test_with_logins_pages_redirect_and_the_api_asks_for_credentials(guarded):
    page = guarded.get("/tasks", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/tasks"
    api = guarded.get("/api/overview")
    assert api.status_code == 401 and api.headers["www-authenticate"].startswith("Basic")
    assert guarded.get("/metrics").status_code == 401
    health = guarded.get("/healthz")  # probes need no password (503: no ingester runs here)
    assert health.status_code != 401 and "ingesting" in health.json()


def test_a_wrong_password_is_refused_and_a_right_one_opens_a_session(guarded):
    wrong = login(guarded, "guess")
    assert wrong.status_code == 401 and "Wrong user name or password" in wrong.text
    assert "fleet_dashboard_session" not in wrong.headers.get("set-cookie", "")
    right = login(guarded)
    assert right.status_code == 303 and right.headers["location"] == "/tasks"
    cookie = right.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie.replace("Strict", "strict")
    assert guarded.get("/api/overview").status_code == 200
    token = guarded.get("/api/csrf").json()["csrf_token"]
    assert token == guarded.board.guard.csrf_token("admin")


def test_login_needs_the_form_token_and_never_redirects_away(guarded):
    no_token = guarded.post("/login", data={"username": "admin", "password": "s3cret"})
    assert no_token.status_code == 403
    away = login(guarded, next_url="https://evil.example/")
    assert away.headers["location"] == "/"


def test_repeated_failures_lock_the_address_out(guarded):
    for _ in range(5):
        assert login(guarded, "guess").status_code == 401
    assert login(guarded).status_code == 429  # even the right password, for a while


def test_programs_use_basic_credentials(guarded):
    good = {"Authorization": "Basic " + base64.b64encode(b"admin:s3cret").decode()}
    bad = {"Authorization": "Basic " + base64.b64encode(b"admin:nope").decode()}
    assert guarded.get("/metrics", headers=good).status_code == 200
    assert guarded.get("/api/overview", headers=bad).status_code == 401
    token = guarded.get("/api/csrf", headers=good).json()["csrf_token"]
    purge = guarded.post("/api/queues/none/purge", json={"confirm": "none"},
                         headers={**good, "X-CSRF-Token": token})
    assert purge.status_code == 404  # past auth and CSRF: no such queue


def test_a_url_prefix_moves_everything_under_it(tmp_path):
    fleet_app, _, application = make_app(tmp_path, prefix="/fleet")
    with TestClient(application, base_url=BASE) as client:
        assert client.get("/fleet/api/overview").status_code == 200
        root = client.get("/", follow_redirects=False)
        assert root.status_code == 307 and root.headers["location"] == "/fleet/"
        page = client.get("/fleet/")
        assert page.status_code == 200 and 'data-prefix="/fleet"' in page.text
        assert client.get("/fleet/static/app.js").status_code == 200
        assert client.get("/api/overview").status_code == 404
    fleet_app.close()
