"""The remote-control client behind app.control: replies, and who is up."""

from __future__ import annotations

import json
import time

import pytest

from fleet.engine import control
from fleet.engine.commands import CONTROL_CHANNEL, REVOKE_PREFIX
from fleet.engine.remote import NodeSeen, Replies
from fleet.operator_errors import UsageError
from tests.unit.engine.node.fakes import close_node, make_app, make_node


def test_replies_know_who_is_missing_and_who_failed():
    replies = Replies({"w1@h": {"ok": "pong"}, "w2@h": {"error": "no"}},
                      expected=["w1@h", "w2@h", "w3@h"])
    assert replies.missing == ["w3@h"]
    assert replies.errors() == {"w2@h": "no"}


def test_a_node_is_offline_after_missing_several_heartbeats():
    assert NodeSeen("w", "h", 1, time.time() - 1.0, {"freq": 2.0}).online
    assert not NodeSeen("w", "h", 1, time.time() - 7.0, {"freq": 2.0}).online


@pytest.fixture
def app():
    app = make_app()
    yield app
    app.close()


def test_with_no_node_registered_a_broadcast_returns_at_once(app):
    started = time.monotonic()
    replies = app.control.ping(timeout=5)
    assert replies == {} and replies.known == [] and time.monotonic() - started < 1


def test_a_revoke_is_stored_before_it_is_broadcast(app):
    app.control.revoke(["t1", "t2"], terminate=True, signal="KILL")
    stored = app.broker.values_with_prefix(REVOKE_PREFIX)
    assert sorted(stored) == ["revoked:t1", "revoked:t2"]
    assert json.loads(stored["revoked:t1"])["signal"] == "KILL"
    with pytest.raises(UsageError, match="needs at least one task id"):
        app.control.revoke([])
    with pytest.raises(UsageError, match="unknown signal"):
        app.control.revoke("t1", terminate=True, signal="NOPE")


def test_the_client_returns_as_soon_as_every_known_node_answered(app, monkeypatch):
    node = make_node(app)
    mailbox = control.attach(node)
    publish = app.broker.publish

    def delivered(channel: str, payload: str) -> None:  # the node's loop, in-process
        publish(channel, payload)
        if channel == CONTROL_CHANNEL:
            mailbox.on_broadcast(node, channel, payload)

    monkeypatch.setattr(app.broker, "publish", delivered)
    started = time.monotonic()
    replies = app.control.inspect(timeout=5).stats()
    assert list(replies) == ["unit@test"] and replies.expected == ["unit@test"]
    assert replies["unit@test"]["hostname"] == "unit@test" and not replies.missing
    assert time.monotonic() - started < 1
    assert [n.name for n in app.control.nodes()] == ["unit@test"]
    bad = app.control.broadcast("pool_grow", {"n": 0})
    assert bad["unit@test"] == {"error": "N must be at least 1"}
    with pytest.raises(UsageError, match="did you mean"):
        app.control.broadcast("pingg")
    close_node(node)
