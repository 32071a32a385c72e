"""The node's main-process hooks (fleet.hooks) without processes: received, revoked
(revoked, expired, terminated), unknown and rejected messages, ready and shutting down."""

from __future__ import annotations

import time

import pytest

from fleet import hooks
from fleet.engine.node.jobs import WARM
from tests.unit.engine.node.fakes import job
from tests.unit.engine.node.test_dispatch import delivery, reserved

NODE_HOOKS = ("task_received", "task_revoked", "task_rejected", "task_unknown", "worker_ready",
              "worker_shutting_down")


@pytest.fixture
def seen():
    calls = []

    def record(signal, sender, **kwargs):
        calls.append((signal.name, sender, kwargs))

    for name in NODE_HOOKS:
        getattr(hooks, name).connect(record)
    yield calls
    for name in NODE_HOOKS:
        getattr(hooks, name).disconnect(record)


def test_a_received_task_is_announced_with_its_request(app, node, seen):
    node.dispatcher.receive(delivery(app, "units.fast", 7))
    [(name, sender, kwargs)] = seen
    assert (name, sender) == ("task_received", node)
    request = kwargs["request"]
    assert request.task == "units.fast" and request.args == [7]
    assert request.hostname == "unit@test" and request.delivery_info["queue"] == "default"


def test_revoked_expired_and_terminated_tasks_say_which(app, node, seen):
    revoked, expired = job(app, "fast", 1), job(app, "fast", 2, expires=0.001)
    node.jobs.revoked.add(revoked.message.id)
    time.sleep(0.01)
    node.jobs.buffer.extend([revoked, expired])
    node.dispatcher.dispatch()
    terminated = job(app, "fast", 3)
    terminated.terminate = 15
    node.settler.lost(terminated, 1234, 15)
    found = [(sender.name, kwargs["request"].args, kwargs["expired"], kwargs["terminated"],
              kwargs["signum"]) for name, sender, kwargs in seen if name == "task_revoked"]
    assert found == [("units.fast", [1], False, False, None),
                     ("units.fast", [2], True, False, None),
                     ("units.fast", [3], False, True, 15)]


def test_an_unknown_task_and_an_unreadable_message_get_their_own_hooks(app, node, seen):
    unknown = reserved(node, delivery(app, "units.nope").body)
    node.dispatcher.receive(unknown)
    node.dispatcher.receive(reserved(node, "not json"))
    (name, sender, kwargs), (name2, _, kwargs2) = seen
    assert (name, sender, kwargs["name"]) == ("task_unknown", node, "units.nope")
    assert kwargs["message"] is unknown and "unknown task" in str(kwargs["exc"])
    assert name2 == "task_rejected" and "undecodable" in kwargs2["reason"]


def test_ready_and_shutting_down_name_the_node_and_the_signal(node, seen):
    node.emit("ready")
    node.shutdown.begin(WARM, "TERM")
    assert seen[0][:2] == ("worker_ready", node)
    assert seen[1] == ("worker_shutting_down", "unit@test",
                       {"sig": "SIGTERM", "how": "Warm", "exitcode": 0})
