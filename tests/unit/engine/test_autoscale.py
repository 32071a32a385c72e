"""Autoscaling: the --autoscale range, and manual resizes inside and outside it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from fleet.engine.autoscale import Autoscaler, parse_autoscale
from fleet.operator_errors import FleetError, UsageError


@pytest.mark.parametrize(("text", "expected"), [("8,2", (8, 2)), ("2,8", (8, 2)), ("4", (4, 0)),
                                                (" 3 , 1 ", (3, 1))])
def test_autoscale_ranges(text, expected):
    assert parse_autoscale(text) == expected


@pytest.mark.parametrize("text", ["", "a,b", "1,2,3", "0", "-1,2"])
def test_bad_autoscale_ranges_are_usage_errors(text):
    with pytest.raises(UsageError, match="invalid autoscale range"):
        parse_autoscale(text)


class StubNode:
    """What the autoscaler touches on a node: its state, its buffer, its children."""

    def __init__(self, concurrency: int):
        self.name = "w1@h"
        self.state = "running"
        self.options = SimpleNamespace(concurrency=concurrency)
        self.jobs = SimpleNamespace(buffer=[])
        self.idle: list[str] = []
        self.children = SimpleNamespace(pool=object(), idle=lambda: self.idle,
                                        resize=self.resize, check_most=self.check_most)
        self.sizes: list[int] = []

    def check_most(self, target: int, what: str) -> None:
        if target > 64:
            raise FleetError(f"{what} refused: over worker_max_concurrency (64)")

    def resize(self, target: int) -> None:
        self.sizes.append(target)
        self.options.concurrency = target


def test_autoscale_refuses_manual_resizes_beyond_its_range_and_its_range_can_change():
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


def test_the_pool_grows_while_tasks_wait_and_shrinks_after_an_idle_keepalive():
    node = StubNode(1)
    scaler = Autoscaler(node, maximum=3, minimum=1, keepalive=10)
    node.jobs.buffer[:] = ["a", "b", "c"]
    assert scaler.tick(0.0) == pytest.approx(0.1)
    assert node.sizes == [3]  # one child per waiting task, up to the maximum
    node.jobs.buffer.clear()
    node.idle[:] = ["child 2", "child 3"]
    scaler.tick(1.0)
    scaler.tick(10.9)
    assert node.sizes == [3]  # idle, but not for the whole keep-alive yet
    scaler.tick(11.0)
    assert node.sizes == [3, 1]
    node.state = "warm shutdown"
    scaler.tick(30.0)
    assert node.sizes == [3, 1]  # a stopping node is left alone
