"""A node's events without processes: which hooks send what, and when they go out."""

from __future__ import annotations

import json

import pytest

from fleet.engine import event_sender, states
from fleet.engine.events import EVENTS_CHANNEL
from tests.unit.engine.node.fakes import job


@pytest.fixture
def published(node):
    """The events the node publishes (a listener on the events channel)."""
    subscription = node.app.broker.subscribe([EVENTS_CHANNEL])

    def events() -> list[dict]:
        return [event for _, payload in subscription.poll()[0] for event in json.loads(payload)]

    yield events
    subscription.close()


def test_task_events_only_while_enabled_and_worker_events_always(node, published):
    sender = event_sender.attach(node)
    received = job(node.app, "fast", 1)
    node.emit("received", received)
    node.emit("heartbeat")
    sender.flush()
    assert [e["type"] for e in published()] == ["worker-heartbeat"]
    node.options.send_events = True
    node.emit("received", received)
    node.emit("settled", received, states.FAILURE, {"runtime": 0.5, "summary": "ValueError: x"})
    assert sender.timer[0] == 0.0  # due right after this turn
    sender.flush()
    got = published()
    assert [e["type"] for e in got] == ["task-received", "task-failed"]
    assert got[0]["args"] == [1] and got[0]["node"] == "unit@test"
    # the workflow ids travel with task-received, so a dashboard can link parents and children
    assert got[0]["root_id"] == received.message.root_id
    assert "parent_id" in got[0] and "group_id" in got[0]
    assert got[1]["exception"] == "ValueError: x" and got[1]["runtime"] == 0.5


def test_online_and_offline_go_out_at_once(node, published):
    event_sender.attach(node)
    node.emit("ready")
    (online,) = published()
    assert online["type"] == "worker-online" and online["concurrency"] == 2
    assert online["queues"] == ["default"]


def test_a_long_argument_is_clipped(node, published):
    sender = event_sender.attach(node)
    node.options.send_events = True
    node.emit("received", job(node.app, "fast", "x" * 2000))
    sender.flush()
    (event,) = published()
    assert isinstance(event["args"], str) and event["args"].endswith("...")
