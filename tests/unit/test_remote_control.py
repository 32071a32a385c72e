"""Remote control without processes: the command registry, argument checks, rendering of
replies and events, the live view, and the explanation when nobody answered."""

from __future__ import annotations

import json
import time

import pytest

import fleet.cli  # noqa: F401 - the whole CLI, as the command runs it (fleet/cli/remote.py)
from fleet.cli.events_view import FleetState, render
from fleet.cli.remote import render_body, render_replies
from fleet.engine import control
from fleet.engine.control import (
    COMMANDS,
    CommandError,
    check_arguments,
    get_command,
    parse_command_line,
)
from fleet.engine.events import decode, format_event
from fleet.inspect import NodeSeen, Replies, explain_silence
from tests.support import run_fleet

ISSUE_INSPECT = {"ping", "active", "reserved", "scheduled", "revoked", "registered", "stats",
                 "active_queues", "query_task", "conf", "report"}
ISSUE_CONTROL = {"enable_events", "disable_events", "heartbeat", "rate_limit", "time_limit",
                 "revoke", "terminate", "add_consumer", "cancel_consumer", "pool_grow",
                 "pool_shrink", "autoscale", "pool_restart", "shutdown"}


def test_the_registry_has_every_command_with_kind_help_and_timeout():
    assert {c.name for c in control.commands_of(control.INSPECT)} == ISSUE_INSPECT
    assert {c.name for c in control.commands_of(control.CONTROL)} == ISSUE_CONTROL
    for cmd in COMMANDS.values():
        assert cmd.help and cmd.timeout > 0


def test_command_line_words_are_typed_by_the_registry():
    assert parse_command_line(COMMANDS["time_limit"], ["proj.add", "1.5"]) == \
        {"task": "proj.add", "soft": 1.5, "hard": None}
    assert parse_command_line(COMMANDS["terminate"], ["sigkill", "a", "b"]) == \
        {"signal": "KILL", "ids": ["a", "b"]}
    assert parse_command_line(COMMANDS["pool_grow"], []) == {"n": 1}
    assert parse_command_line(COMMANDS["terminate"], ["9", "a"])["signal"] == "KILL"


@pytest.mark.parametrize(("name", "words", "message"), [
    ("pool_grow", ["two"], "bad N 'two': expected a whole number such as 2"),
    ("time_limit", ["t", "soon"], "bad SOFT 'soon': expected a number of seconds"),
    ("terminate", ["NOPE", "x"], "unknown signal"),
    ("terminate", ["INT", "x"], "SIGINT does not stop a task"),
    ("rate_limit", ["t", "fast"], "invalid rate limit"),
    ("rate_limit", ["t"], "needs RATE"),
    ("ping", ["extra"], "unexpected 'extra'"),
    ("revoke", [], "needs IDS"),
])
def test_bad_arguments_say_what_is_wrong_and_the_usage(name, words, message):
    with pytest.raises(CommandError, match=message):
        parse_command_line(COMMANDS[name], words)


def test_api_arguments_are_checked_too():
    with pytest.raises(CommandError, match="takes no argument 'bogus'"):
        check_arguments(COMMANDS["ping"], {"bogus": 1})
    assert check_arguments(COMMANDS["revoke"], {"ids": "one"}) == {"ids": ["one"]}


def test_unknown_commands_get_a_did_you_mean_or_the_right_kind():
    with pytest.raises(CommandError, match="did you mean 'active'"):
        get_command("activ", control.INSPECT)
    with pytest.raises(CommandError, match="use `fleet control shutdown`"):
        get_command("shutdown", control.INSPECT)


def test_replies_render_as_ok_or_error_with_indented_bodies():
    lines = render_replies({"w2@h": {"error": "unknown task 'x'"}, "w1@h": {"ok": "pong"}})
    assert lines == ["->  w1@h: OK", "    pong", "->  w2@h: ERROR", "    unknown task 'x'"]
    assert render_body([]) == ["- empty -"]
    assert render_body([{"id": 1}, "text"]) == ['* {"id": 1}', "* text"]
    assert render_body({"b": 1, "a": 2})[:2] == ["{", '  "a": 2,']


def test_replies_know_who_is_missing_and_who_failed():
    replies = Replies({"w1@h": {"ok": "pong"}, "w2@h": {"error": "no"}},
                      expected=["w1@h", "w2@h", "w3@h"])
    assert replies.missing == ["w3@h"]
    assert replies.errors() == {"w2@h": "no"}


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


def test_a_node_is_offline_after_missing_several_heartbeats():
    assert NodeSeen("w", "h", 1, time.time() - 1.0, {"freq": 2.0}).online
    assert not NodeSeen("w", "h", 1, time.time() - 7.0, {"freq": 2.0}).online


def test_dump_lines_show_time_node_event_task_and_outcome():
    event = {"type": "task-succeeded", "node": "w1@h", "timestamp": 1_700_000_000.25,
             "uuid": "abc", "name": "proj.add", "result": "4", "runtime": 0.0123}
    line = format_event(event)
    assert " w1@h task-succeeded proj.add[abc] result=\"4\" runtime=0.012300s" in line
    assert ".250 " in line
    assert decode('[{"type": "worker-online"}, 5]') == [{"type": "worker-online"}]
    assert decode("not json") == []


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


class FakeNode:
    """Just enough of a node for the mailbox: a name, a broker, a revoke set, shutdown."""

    def __init__(self, broker):
        self.name = "w1@h"
        self.broker = broker
        self.revoked: set[str] = set()
        self.buffer: list = []
        self.scheduled: list = []
        self.active: dict = {}
        self.shutdowns: list[int] = []

    def begin_shutdown(self, how: str, why: str = "") -> None:
        self.shutdowns.append(len(self.replies.poll()[0]))  # replies already published

    def watch(self, ticket: str) -> None:
        self.replies = self.broker.subscribe([control.reply_channel(ticket)])


def _request(command: str, **extra) -> str:
    import json

    return json.dumps({"ticket": "t1", "command": command, "arguments": {},
                       "destination": None, "deadline": time.time() + 5, **extra})


@pytest.fixture
def mailbox():
    import uuid

    from fleet.engine.transport import open_transport

    node = FakeNode(open_transport(f"memory://{uuid.uuid4().hex}"))
    node.watch("t1")
    return control.Mailbox(node)


def _replies(mailbox) -> list[dict]:
    import json

    return [json.loads(payload) for _, payload in mailbox.node.replies.poll()[0]]


def test_the_mailbox_answers_requests_for_it_with_the_ticket(mailbox):
    mailbox.on_broadcast(mailbox.node, control.CONTROL_CHANNEL, _request("ping"))
    assert _replies(mailbox) == [{"ticket": "t1", "node": "w1@h", "ok": "pong"}]


@pytest.mark.parametrize("extra", [{"destination": ["w2@h"]},
                                   {"deadline": time.time() - 60}])
def test_the_mailbox_ignores_other_nodes_and_late_requests(mailbox, extra):
    mailbox.on_broadcast(mailbox.node, control.CONTROL_CHANNEL, _request("ping", **extra))
    assert _replies(mailbox) == []


def test_a_node_whose_clock_runs_a_little_ahead_still_answers(mailbox):
    # Regression: the deadline is the client's clock; a node 1s ahead ignored every request.
    late = _request("ping", deadline=time.time() - 1)
    mailbox.on_broadcast(mailbox.node, control.CONTROL_CHANNEL, late)
    assert [reply["ok"] for reply in _replies(mailbox)] == ["pong"]


def test_an_unknown_command_or_bad_arguments_get_an_error_reply(mailbox):
    mailbox.on_broadcast(mailbox.node, control.CONTROL_CHANNEL, _request("pong"))
    mailbox.on_broadcast(mailbox.node, control.CONTROL_CHANNEL,
                         _request("pool_grow", arguments={"n": "lots"}))
    errors = [reply["error"] for reply in _replies(mailbox)]
    assert "did you mean 'ping'" in errors[0]
    assert "bad N 'lots'" in errors[1]


def test_shutdown_replies_before_the_node_begins_to_stop(mailbox):
    mailbox.on_broadcast(mailbox.node, control.CONTROL_CHANNEL, _request("shutdown"))
    assert mailbox.node.shutdowns == [1]  # the reply was out when shutdown began


def test_revokes_are_stored_with_their_expiry_and_loaded_by_a_node(mailbox):
    broker = mailbox.node.broker
    control.store_revokes(broker, ["a", "b"], expires=60)
    mailbox.load_revokes()
    assert mailbox.node.revoked == {"a", "b"}
    control.store_revokes(broker, ["c"], expires=60)
    mailbox.refresh_revokes()
    assert mailbox.node.revoked == {"a", "b", "c"}
    control.store_revokes(broker, ["gone"], expires=0.01)
    mailbox.refresh_revokes()
    assert "gone" in mailbox.node.revoked
    time.sleep(0.05)
    assert "revoked:gone" not in broker.values_with_prefix(control.REVOKE_PREFIX)
    # Regression: expired revokes stayed in the node's set forever (it only grew).
    control.store_revokes(broker, ["d"], expires=60)
    mailbox.refresh_revokes()
    assert mailbox.node.revoked == {"a", "b", "c", "d"}


def test_events_keep_coming_after_a_broker_error_when_the_caller_takes_notices(monkeypatch):
    # Regression: `fleet events --dump` died on a broker restart instead of reconnecting.
    import uuid

    from fleet import Fleet
    from fleet.engine import events
    from fleet.exceptions import BrokerUnavailable

    app = Fleet("t", broker=f"memory://{uuid.uuid4().hex}")
    real_wait, failures = events._wait, [1]

    def flaky_wait(subscription, interval):
        if failures[0]:
            failures[0] -= 1
            raise BrokerUnavailable("injected: the broker restarts")
        return real_wait(subscription, interval)

    monkeypatch.setattr(events, "_wait", flaky_wait)
    monkeypatch.setattr(events, "RESUBSCRIBE_DELAY", 0.0)
    notices: list[str] = []
    stream = events.listen(app, interval=0.01, notice=notices.append)
    assert next(stream) is None
    assert next(stream) is None  # the error: noticed, subscribed again
    assert "broker error (BrokerUnavailable" in notices[0] and "listening again" in notices[1]
    app.broker.publish(events.EVENTS_CHANNEL, '[{"type": "worker-heartbeat", "node": "w"}]')
    got = next(item for item in stream if item is not None)
    assert got["type"] == "worker-heartbeat"
    stream.close()
    plain = events.listen(app, interval=0.01)
    assert next(plain) is None
    failures[0] = 1
    with pytest.raises(BrokerUnavailable):  # without notices, the error is the caller's
        next(plain)
    app.close()
