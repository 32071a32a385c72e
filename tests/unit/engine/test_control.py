"""A node's mailbox without processes: answering requests, durable revokes."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from fleet.engine import control
from fleet.engine.node.jobs import Jobs


class FakeNode:
    """Just enough of a node for the mailbox: a name, a broker, a revoke set, shutdown."""

    def __init__(self, broker):
        self.name = "w1@h"
        self.consumer = SimpleNamespace(broker=broker)
        self.jobs = Jobs()
        self.shutdowns: list[int] = []
        self.shutdown = SimpleNamespace(begin=self.begin_shutdown)

    def begin_shutdown(self, how: str, why: str = "") -> None:
        self.shutdowns.append(len(self.replies.poll()[0]))  # replies already published

    def watch(self, ticket: str) -> None:
        self.replies = self.consumer.broker.subscribe([control.reply_channel(ticket)])


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
    broker = mailbox.node.consumer.broker
    control.store_revokes(broker, ["a", "b"], expires=60)
    mailbox.load_revokes()
    assert mailbox.node.jobs.revoked == {"a", "b"}
    control.store_revokes(broker, ["c"], expires=60)
    mailbox.refresh_revokes()
    assert mailbox.node.jobs.revoked == {"a", "b", "c"}
    control.store_revokes(broker, ["gone"], expires=0.01)
    mailbox.refresh_revokes()
    assert "gone" in mailbox.node.jobs.revoked
    time.sleep(0.05)
    assert "revoked:gone" not in broker.values_with_prefix(control.REVOKE_PREFIX)
    # Regression: expired revokes stayed in the node's set forever (it only grew).
    control.store_revokes(broker, ["d"], expires=60)
    mailbox.refresh_revokes()
    assert mailbox.node.jobs.revoked == {"a", "b", "c", "d"}


# -- the handlers, on a node without processes -------------------------------------------------


def test_every_declared_command_has_a_handler_on_the_node():
    assert set(control.HANDLERS) == set(control.COMMANDS)

    def do_bogus(mailbox):
        return None

    with pytest.raises(LookupError, match="declare 'bogus'"):
        control.handles(do_bogus)


@pytest.fixture
def real():
    """A mailbox on a node with a FakePool (see tests/unit/engine/node/fakes.py)."""
    from tests.unit.engine.node.fakes import close_node, make_app, make_node

    app = make_app()
    node = make_node(app)
    yield control.Mailbox(node)
    close_node(node)
    app.close()


def test_a_threads_node_refuses_what_it_cannot_do_and_says_so(real):
    from tests.unit.engine.node.fakes import job

    node = real.node
    node.options.pool = "solo"
    node.children.pool.can_signal = False
    running = job(node.app, "fast", 1)
    node.jobs.buffer.append(running)
    node.dispatcher.dispatch()
    refused = real.run("terminate", {"signal": "TERM", "ids": [running.message.id]})
    assert f"cannot terminate {running.message.id}: in the solo pool" in refused["error"]
    assert running.message.id in node.jobs.revoked  # still revoked: it never runs again
    assert "cannot apply time limits" in real.run("time_limit", {
        "task": "units.fast", "soft": 1, "hard": 2})["error"]
    assert real.run("time_limit", {"task": "units.fast", "soft": 0, "hard": 0})["ok"]
    for command in ("pool_grow", "pool_shrink"):
        assert "solo pool runs one task" in real.run(command, {"n": 1})["error"]
    assert "solo pool runs one task" in real.run("autoscale", {"max": 3, "min": 1})["error"]
    assert real.run("stats", None)["ok"]["pool"]["implementation"] == "solo"


def test_a_node_tells_which_jobs_run_wait_or_are_scheduled(real):
    from tests.unit.engine.node.fakes import job

    node = real.node
    busy, ready, later = job(node.app, "fast", 1), job(node.app, "fast", 2), \
        job(node.app, "fast", 3)
    node.jobs.buffer.append(busy)
    node.dispatcher.dispatch()
    node.jobs.buffer.append(ready)
    node.jobs.hold_until(later, time.time() + 60)
    (active,) = real.run("active", None)["ok"]
    assert active["id"] == busy.message.id and active["worker_pid"] == busy.child.pid
    assert active["acknowledged"] and active["time_limits"] == [None, None]
    assert [r["id"] for r in real.run("reserved", None)["ok"]] == [ready.message.id]
    (scheduled,) = real.run("scheduled", None)["ok"]
    assert scheduled["request"]["id"] == later.message.id
    found = real.run("query_task", {"ids": [later.message.id, busy.message.id]})["ok"]
    assert {key: value[0] for key, value in found.items()} == \
        {busy.message.id: "active", later.message.id: "scheduled"}
    stats = real.run("stats", None)["ok"]
    assert stats["active"] == 1 and stats["prefetch_count"] == 8
    assert stats["queues"] == ["default"] and len(stats["pool"]["processes"]) == 2


def test_a_revoke_settles_the_held_job_and_terminate_signals_the_running_one(real):
    from tests.unit.engine.node.fakes import job

    node = real.node
    busy, waiting = job(node.app, "fast", 1), job(node.app, "fast", 2)
    node.jobs.buffer.append(busy)
    node.dispatcher.dispatch()
    node.jobs.buffer.append(waiting)
    assert "flagged as revoked" in real.run("revoke", {"ids": [waiting.message.id]})["ok"]
    assert not node.jobs.buffer and waiting.message.id in node.jobs.revoked
    reply = real.run("terminate", {"signal": "KILL", "ids": [busy.message.id]})["ok"]
    assert reply == f"terminated {busy.message.id} with SIGKILL"
    assert node.children.pool.signals == [(busy.child.slot, 9)]


def test_refusals_come_back_as_error_replies_naming_the_fix(real):
    assert "did you mean 'units.fast'" in real.run("rate_limit", {"task": "units.fas",
                                                                  "rate": "1/s"})["error"]
    assert "only queue" in real.run("cancel_consumer", {"queue": "default"})["error"]
    assert real.run("add_consumer", {"queue": "other"})["ok"] == "now consuming from other"
    assert real.node.consumer.queues == ["default", "other"]
    assert real.run("pool_grow", {"n": 1})["ok"] == "pool will grow to 3"
    assert "must be below the hard one" in real.run("time_limit", {
        "task": "units.fast", "soft": 5, "hard": 2})["error"]
    assert real.run("autoscale", {"max": 4, "min": 2})["ok"] == "autoscale now max=4 min=2"
    assert "over the autoscale maximum of 4" in real.run("pool_grow", {"n": 5})["error"]
    assert "(4 tasks)" in real.run("report", None)["ok"]
