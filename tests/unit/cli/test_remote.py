"""Remote control for operators, without nodes: how replies render, why nobody answered, the
live view, and the CLI built from the registry. (The engine's side, the registry, the client
and the node's mailbox, is tested in tests/unit/engine/.)"""

from __future__ import annotations

import json
import time

import fleet.cli  # noqa: F401 - the whole CLI, as the command runs it (fleet/cli/remote.py)
from fleet.cli.events_view import FleetState, render
from fleet.cli.remote import render_body, render_replies
from fleet.inspect import NodeSeen, Replies, explain_silence
from tests.support import run_fleet


def test_replies_render_as_ok_or_error_with_indented_bodies():
    lines = render_replies({"w2@h": {"error": "unknown task 'x'"}, "w1@h": {"ok": "pong"}})
    assert lines == ["->  w1@h: OK", "    pong", "->  w2@h: ERROR", "    unknown task 'x'"]
    assert render_body([]) == ["- empty -"]
    assert render_body([{"id": 1}, "text"]) == ['* {"id": 1}', "* text"]
    assert render_body({"b": 1, "a": 2})[:2] == ["{", '  "a": 2,']


def test_silence_is_explained_with_the_known_nodes_and_what_to_try():
    stale = NodeSeen("w1@h", "h", 42, time.time() - 120, {"freq": 2.0})
    text = explain_silence(Replies(timeout=1.0, known=[stale]), "redis://:secret@db:6379/0")
    assert "no node replied within 1s" in text
    assert "w1@h (pid 42 on h): last heartbeat 2 min ago, offline" in text
    assert "secret" not in text and "reachable" in text
    assert "--timeout" in text and "fleet multi status" in text
    nobody = explain_silence(Replies(timeout=1.0), "sqlite:///x.db")
    assert "no node is registered" in nobody and "within" not in nobody
    typo = explain_silence(Replies(timeout=1.0, known=[stale], expected=["w9@h"]), "redis://db")
    assert "None of w9@h is known to the broker" in typo
    assert "stored in the broker" not in typo


def test_silence_after_a_revoke_says_the_revoke_is_stored_anyway():
    # Regression: `fleet control revoke` with no node up read as a failure, yet it worked.
    for replies in (Replies(command="revoke"), Replies(command="terminate", known=[
            NodeSeen("w1@h", "h", 42, time.time() - 120, {"freq": 2.0})])):
        text = explain_silence(replies, "sqlite:///x.db")
        assert "The revoke itself is stored in the broker" in text
    assert "stored" not in explain_silence(Replies(command="revoke"), "redis://db", "refused")
    down = explain_silence(Replies(timeout=1.0), "redis://db", "ConnectionError: refused")
    assert "was not reachable (ConnectionError: refused)" in down


def test_the_live_view_folds_events_into_nodes_tasks_rates_and_failures():
    now = time.time()
    state = FleetState()
    for event in [
        {"type": "worker-heartbeat", "node": "w1@h", "timestamp": now, "active": 1,
         "processed": 5, "concurrency": 2, "loadavg": [0.5, 0, 0], "freq": 2.0},
        {"type": "task-started", "node": "w1@h", "timestamp": now - 3, "uuid": "t1",
         "name": "proj.slow"},
        {"type": "task-started", "node": "w1@h", "timestamp": now - 1, "uuid": "t2",
         "name": "proj.add"},
        {"type": "task-failed", "node": "w1@h", "timestamp": now, "uuid": "t2",
         "name": "proj.add", "exception": "ValueError: boom"},
    ]:
        state.apply(event)
    screen = render(state, 100, 50, now)
    text = "\n".join(screen)
    assert any(line.startswith("w1@h") and "online" in line and "1/2" in line
               for line in screen)
    assert "proj.slow[t1" in text and "3.0s" in text
    assert "proj.add[t2" not in text.split("RECENT FAILURES")[0].split("TASK ")[0]
    assert "proj.add[t2] ValueError: boom" in text
    assert all(len(line) <= 100 for line in screen)
    assert len(render(state, 40, 5, now)) == 5
    state.apply({"type": "worker-offline", "node": "w1@h", "timestamp": now})
    assert "offline" in "\n".join(render(state, 100, 50, now))
    state.notice = "12:00:00 broker error (ConnectionError: refused)"
    assert render(state, 100, 50, now)[1] == state.notice


def test_cli_lists_and_helps_from_the_registry():
    env = {"PATH": "/usr/bin:/bin"}
    listed = run_fleet("control", "--list", env=env)
    assert listed.returncode == 0
    assert "time_limit TASK SOFT [HARD]" in listed.stdout
    assert "terminate SIGNAL IDS..." in listed.stdout
    helped = run_fleet("inspect", "query_task", "--help", env=env)
    assert "What this node knows of these task ids" in helped.stdout
    assert "--destination" in helped.stdout and "--timeout" in helped.stdout
    wrong = run_fleet("inspect", "activ", env=env)
    assert wrong.returncode == 2 and "did you mean 'active'" in wrong.stderr
    as_json = json.loads(run_fleet("control", "--list", "--json", env=env).stdout)
    limit = next(cmd for cmd in as_json if cmd["name"] == "time_limit")
    assert limit["usage"] == "time_limit TASK SOFT [HARD]" and limit["kind"] == "control"
    assert [a["required"] for a in limit["arguments"]] == [True, True, False]


def test_a_bad_argument_is_one_line_naming_the_command_once():
    # Regression: "fleet control pool_grow: pool_grow: bad N 'x': invalid literal for int()".
    bad = run_fleet("control", "pool_grow", "x", env={"PATH": "/usr/bin:/bin"})
    assert bad.returncode == 2
    assert bad.stderr.startswith("fleet control pool_grow: bad N 'x': expected a whole")
    assert "pool_grow: pool_grow" not in bad.stderr and len(bad.stderr.splitlines()) == 1
