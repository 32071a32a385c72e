"""The SQLite transport's messages, consumers and broadcasts judged by the clock (a file in
a temporary directory; the shared contract is checked in tests/integration)."""

from __future__ import annotations

import uuid

import pytest

from fleet.engine.transport import open_transport
from fleet.engine.transport.base import ConsumerInfo, Outgoing
from fleet.engine.transport.clock import ManualClock
from fleet.engine.transport.sqlite import BROADCAST_KEEP_SECONDS, SCHEMA_VERSION, path_from_url


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1_000_000.0)


@pytest.fixture
def broker(tmp_path, clock):
    transport = open_transport(f"sqlite:///{tmp_path / 'b.db'}", clock=clock)
    yield transport
    transport.close()


def message(eta: float | None = None) -> Outgoing:
    return Outgoing(uuid.uuid4().hex, "q", "{}", eta=eta)


def test_the_schema_version_and_path_helper_are_still_importable_from_here():
    assert SCHEMA_VERSION >= 2 and callable(path_from_url)


def test_a_scheduled_message_moves_to_messages_only_once_due_by_the_clock(broker, clock):
    later = message(eta=clock.time() + 60)
    broker.put([later])
    count = broker.conn.execute

    assert count("SELECT COUNT(*) FROM scheduled").fetchone()[0] == 1
    assert broker.reserve("c#1", ["q"], 5, horizon=30) == []
    assert count("SELECT COUNT(*) FROM scheduled").fetchone()[0] == 1

    clock.advance(30)
    assert [d.id for d in broker.reserve("c#1", ["q"], 5, horizon=30)] == [later.id]
    assert count("SELECT COUNT(*) FROM scheduled").fetchone()[0] == 0


def test_recovery_compares_heartbeats_with_the_clock(broker, clock):
    broker.register(ConsumerInfo("w#1", "w", ["q"], 1, "h"))
    heartbeat = broker.conn.execute("SELECT heartbeat FROM consumers").fetchone()[0]

    assert heartbeat == clock.time()
    clock.advance(10)
    assert broker.recover(timeout=10).dead_consumers == []
    clock.advance(0.5)
    assert broker.recover(timeout=10).dead_consumers == ["w#1"]


def test_old_broadcasts_go_by_the_clock(broker, clock):
    broker.publish("control", "old")
    clock.advance(BROADCAST_KEEP_SECONDS + 1)
    broker.publish("control", "new")

    broker.cleanup()

    rows = broker.conn.execute("SELECT payload, at FROM broadcasts").fetchall()
    assert rows == [("new", clock.time())]
