"""`fleet worker --check`'s library side: what keeps a node from consuming."""

from __future__ import annotations

import os
import time

import pytest

from fleet.engine.health import check_node
from fleet.engine.transport.base import ConsumerRecord


class FakeBroker:
    transient_errors = (ConnectionError,)

    def __init__(self, *records):
        self.records = records

    def consumers(self):
        if not self.records:
            raise ConnectionError("refused")
        return [r for r in self.records if r is not None]


def record(age: float = 0.1, **info):
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
    health = check_node(FakeBroker(record(**fields)), "n1@h", 10.0)
    assert health.status == status and words in health.detail, health.detail


def test_health_without_the_broker_or_the_node():
    assert check_node(FakeBroker(), "n1@h", 10.0).status == "UNKNOWN"
    health = check_node(FakeBroker(None), "n1@h", 10.0)
    assert health.status == "NOT CONSUMING" and "no node of that name" in health.detail
    health = check_node(FakeBroker(None), "n1@h", 10.0, pid=os.getpid())
    assert "alive but not registered" in health.detail


