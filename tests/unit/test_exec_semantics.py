"""The node's dispatch rules without processes: rate-limited jobs wait aside (not in the
prefetch), and a rate limit changed at runtime applies to the jobs already held."""

from __future__ import annotations

import os
import time

import pytest

from fleet import Fleet
from fleet.engine.pool import Child
from fleet.engine.task import build_message
from fleet.engine.transport.base import Delivery
from fleet.engine.worker import Job, Node, NodeOptions


class FakePool:
    """Two idle children that record what they are sent."""

    def __init__(self, size: int = 2):
        self.children = {pid: Child(pid, pid, 100 + pid, 200 + pid, up=True)
                         for pid in range(1, size + 1)}
        self.sent: list[str] = []
        self.terminating: dict[int, float] = {}

    def send(self, child: Child, header: dict, payload: str) -> None:
        self.sent.append(payload)


@pytest.fixture
def app():
    app = Fleet("units", broker="memory://")

    @app.task(name="units.slow", rate_limit="1/h")
    def slow(x):
        return x

    @app.task(name="units.fast")
    def fast(x):
        return x

    yield app
    app.close()


@pytest.fixture
def node(app):
    node = Node(app, NodeOptions("unit@test", ["default"], concurrency=2))
    node.pool = FakePool()
    yield node
    node.selector.close()
    node.signals.close()


def job(app, name: str, x: int) -> Job:
    msg = build_message(app, f"units.{name}", (x,), {}, {})
    task = app.tasks[msg.task]
    return Job(Delivery(msg.id, "default", msg.encode()), msg, task, time.monotonic(),
               acks_late=False, ignore_result=False)


def started(node) -> list[str]:
    return [job.message.task.split(".")[1] + str(job.message.args[0])
            for job in node.active.values()]


def test_jobs_over_their_rate_wait_aside_and_do_not_block_other_tasks(app, node):
    node.buffer.extend([job(app, "slow", 1), job(app, "slow", 2), job(app, "slow", 3),
                        job(app, "fast", 4)])
    node._dispatch()
    assert sorted(started(node)) == ["fast4", "slow1"]
    assert [j.message.args[0] for j in node.throttled["units.slow"]] == [2, 3]
    assert not node.buffer  # held jobs don't count against the prefetch
    assert node._has_capacity()


def test_lifting_a_rate_limit_at_runtime_releases_the_held_jobs_in_order(app, node):
    node.buffer.extend([job(app, "slow", 1), job(app, "slow", 2), job(app, "slow", 3)])
    node._dispatch()
    node.set_rate_limit(app.tasks["units.slow"], None)
    assert "units.slow" not in node.throttled
    assert [j.message.args[0] for j in node.buffer] == [2, 3]
    for child in node.pool.children.values():
        child.job = None
    node.active.clear()
    node._dispatch()
    assert sorted(started(node)) == ["slow2", "slow3"]


def test_a_faster_rate_set_at_runtime_applies_to_held_jobs(app, node):
    node.buffer.extend([job(app, "slow", 1), job(app, "slow", 2)])
    node._dispatch()
    node.set_rate_limit(app.tasks["units.slow"], "1000/s")
    for child in node.pool.children.values():
        child.job = None
    node.active.clear()
    time.sleep(0.01)
    node._dispatch()
    assert started(node) == ["slow2"]


@pytest.mark.parametrize(("text", "expected"), [("8,2", (8, 2)), ("2,8", (8, 2)), ("4", (4, 0)),
                                                (" 3 , 1 ", (3, 1))])
def test_autoscale_ranges(text, expected):
    from fleet.engine.autoscale import parse_autoscale

    assert parse_autoscale(text) == expected


@pytest.mark.parametrize("text", ["", "a,b", "1,2,3", "0", "-1,2"])
def test_bad_autoscale_ranges_are_usage_errors(text):
    from fleet.engine.autoscale import parse_autoscale
    from fleet.operator_errors import UsageError

    with pytest.raises(UsageError, match="invalid autoscale range"):
        parse_autoscale(text)


class FakeBroker:
    transient_errors = (ConnectionError,)

    def __init__(self, *records):
        self.records = records

    def consumers(self):
        if not self.records:
            raise ConnectionError("refused")
        return [r for r in self.records if r is not None]


def record(age: float = 0.1, **info):
    from fleet.engine.transport.base import ConsumerRecord

    base = {"state": "running", "ready": True, "concurrency": 2, "children_up": 2,
            "broker_failures": 0, "hungry": False, "fetch_age": 0.0, "active": 0}
    return ConsumerRecord("n1@h#1", "n1@h", ["default"], os.getpid(), "h", time.time() - age,
                          {**base, **info})


@pytest.mark.parametrize(("fields", "status", "words"), [
    ({}, "OK", "consuming default"),
    ({"age": 30}, "NOT CONSUMING", "no heartbeat for 30"),
    ({"state": "warm shutdown"}, "NOT CONSUMING", "in warm shutdown"),
    ({"ready": False}, "NOT CONSUMING", "not up yet"),
    ({"children_up": 0}, "NOT CONSUMING", "no child process is up"),
    ({"broker_failures": 3}, "NOT CONSUMING", "the broker failed 3 time(s)"),
    ({"hungry": True, "fetch_age": 9.0}, "NOT CONSUMING", "no message reserved for 9.1s"),
    ({"hungry": True, "fetch_age": 0.5}, "OK", "consuming"),
    ({"hungry": False, "fetch_age": 60.0}, "OK", "consuming"),  # busy: no need to fetch
])
def test_health_names_what_keeps_a_node_from_consuming(fields, status, words):
    from fleet.engine.health import check_node

    health = check_node(FakeBroker(record(**fields)), "n1@h", 10.0)
    assert health.status == status and words in health.detail, health.detail


def test_health_without_the_broker_or_the_node():
    from fleet.engine.health import check_node

    assert check_node(FakeBroker(), "n1@h", 10.0).status == "UNKNOWN"
    health = check_node(FakeBroker(None), "n1@h", 10.0)
    assert health.status == "NOT CONSUMING" and "no node of that name" in health.detail
    health = check_node(FakeBroker(None), "n1@h", 10.0, pid=os.getpid())
    assert "alive but not registered" in health.detail


class StubNode:
    """What the autoscaler touches on a node."""

    def __init__(self, concurrency: int):
        self.options = type("Options", (), {"concurrency": concurrency})()
        self.sizes: list[int] = []

    def resize(self, target: int) -> None:
        self.sizes.append(target)
        self.options.concurrency = target


def test_autoscale_refuses_manual_resizes_beyond_its_range_and_its_range_can_change():
    from fleet.engine.autoscale import Autoscaler
    from fleet.operator_errors import FleetError

    node = StubNode(4)
    scaler = Autoscaler(node, maximum=4, minimum=2, keepalive=30)
    scaler.check(3, "pool_shrink")  # inside the range: fine
    with pytest.raises(FleetError, match=r"pool_grow refused: .* over the autoscale maximum of 4"):
        scaler.check(5, "pool_grow")
    with pytest.raises(FleetError, match=r"TTOU refused: .* under the autoscale minimum of 2"):
        scaler.check(1, "TTOU")
    assert scaler.update(2, 3) == "autoscale now max=3 min=2"  # either order
    assert node.sizes == [3]  # the pool was over the new maximum
    with pytest.raises(FleetError, match="invalid autoscale range"):
        scaler.update(0, 0)
