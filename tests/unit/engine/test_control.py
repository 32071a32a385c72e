"""A node's mailbox without processes: answering requests, durable revokes."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest

from fleet.engine import control
from fleet.engine.node.jobs import Jobs
from fleet.engine.transport.base import StoredResult


class FakeNode:
    """Just enough of a node for the mailbox: a name, a broker, a revoke set, shutdown."""

    def __init__(self, broker):
        self.name = "w1@h"
        self.consumer = SimpleNamespace(broker=broker)
        self.conf = SimpleNamespace(task_revoke_expires=60.0)
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
    assert set(mailbox.node.jobs.revoked) == {"a", "b"}
    control.store_revokes(broker, ["c"], expires=60)
    mailbox.refresh_revokes()
    assert set(mailbox.node.jobs.revoked) == {"a", "b", "c"}
    control.store_revokes(broker, ["gone"], expires=0.01)
    mailbox.refresh_revokes()
    assert "gone" in mailbox.node.jobs.revoked
    time.sleep(0.05)
    assert "revoked:gone" not in broker.values_with_prefix(control.REVOKE_PREFIX)
    # Regression: expired revokes stayed in the node's set forever (it only grew).
    control.store_revokes(broker, ["d"], expires=60)
    mailbox.refresh_revokes()
    assert set(mailbox.node.jobs.revoked) == {"a", "b", "c", "d"}
    assert len(mailbox.node.jobs.revoked) == 4  # the expired one is forgotten too


class _Counting:
    """A broker that counts what a node asks it for revokes."""

    def __init__(self, broker):
        self.broker = broker
        self.read: list[str] = []

    def get_value(self, key):
        self.read.append(key)
        return self.broker.get_value(key)

    def get_values(self, keys):
        self.read += keys
        return self.broker.get_values(keys)

    def values_with_prefix(self, prefix):
        raise AssertionError("loading revokes must never list keys by prefix (a SCAN)")


def test_loading_revokes_reads_batches_by_number_never_by_listing_keys(mailbox):
    # Regression: each revoke made every node list every key of the store (a Redis SCAN of
    # the whole keyspace, in the node's main loop).
    broker = mailbox.node.consumer.broker
    for n in range(5):
        control.store_revokes(broker, [f"t{n}a", f"t{n}b"], expires=60)
    counting = _Counting(broker)
    mailbox.node.consumer.broker = counting
    mailbox.load_revokes()
    assert len(set(mailbox.node.jobs.revoked)) == 10
    counting.read.clear()
    mailbox.refresh_revokes()  # nothing new: one read of the counter
    assert counting.read == [control.REVOKE_VERSION_KEY]
    control.store_revokes(broker, ["new"], expires=60)
    counting.read.clear()
    mailbox.refresh_revokes()
    assert counting.read == [control.REVOKE_VERSION_KEY, "revoked.batch:6"]
    assert "new" in mailbox.node.jobs.revoked


def test_a_batch_read_before_it_is_written_is_looked_for_again(mailbox):
    broker = mailbox.node.consumer.broker
    mailbox.load_revokes()
    broker.incr(control.REVOKE_VERSION_KEY, 1)  # a client took number 1, has not written it
    mailbox.refresh_revokes()
    assert "late" not in mailbox.node.jobs.revoked
    broker.set_values([StoredResult("revoked.batch:1", json.dumps(
        {"ids": ["late"], "at": time.time(), "expires": 60}))])
    mailbox.refresh_revokes()
    assert "late" in mailbox.node.jobs.revoked


def test_revoke_entries_fleet_did_not_write_are_skipped(mailbox, caplog):
    broker = mailbox.node.consumer.broker
    control.store_revokes(broker, ["good"], expires=60)
    broker.set_values([StoredResult("revoked.batch:2", "not json"),
                       StoredResult("revoked.batch:3", json.dumps({"ids": [5]})),
                       StoredResult(control.REVOKE_VERSION_KEY, "3")])
    mailbox.load_revokes()
    assert set(mailbox.node.jobs.revoked) == {"good"}
    assert "skipped revoke batch revoked.batch:2" in caplog.text
    broker.set_values([StoredResult(control.REVOKE_VERSION_KEY, "garbage")])
    mailbox.refresh_revokes()  # a warning, nothing else
    assert "not a number" in caplog.text


def test_the_revoked_set_is_capped_and_expires(mailbox):
    revoked = mailbox.node.jobs.revoked
    revoked.maxlen = 3
    revoked.update(["a", "b", "c", "d"], time.time() + 60)
    assert list(revoked) == ["b", "c", "d"] and "a" not in revoked  # the oldest went first
    revoked.add("old", time.time() - 1)
    assert "old" not in revoked and revoked.purge() == 1
    assert revoked.newest(2) == ["d", "c"]


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


def test_inspect_revoked_returns_a_bounded_page_newest_first(mailbox):
    # Regression (issue 13): every revoked id came back (300,000 of them in one reply).
    revoked = mailbox.node.jobs.revoked
    revoked.update([f"t{n}" for n in range(2000)], time.time() + 60)
    assert control.HANDLERS["revoked"](mailbox, 1000) == [f"t{n}" for n in range(1999, 999, -1)]
    assert mailbox.run("revoked", {"limit": 3}) == {"ok": ["t1999", "t1998", "t1997"]}
    assert "LIMIT must be from 1 to 10000" in mailbox.run("revoked", {"limit": 10**6})["error"]
    assert len(mailbox.run("revoked", None)["ok"]) == 1000
