"""The SQLite broker's values: expiry and leases follow the transport's clock exactly."""

from __future__ import annotations

import pytest

from fleet.engine.transport import open_transport
from fleet.engine.transport.base import StoredResult
from fleet.engine.transport.clock import ManualClock


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1_000_000.0)


@pytest.fixture
def store(tmp_path, clock):
    transport = open_transport(f"sqlite:///{tmp_path / 'b.db'}", clock=clock)
    yield transport
    transport.close()


def test_a_value_is_gone_at_its_expiry_by_the_clock_and_its_row_at_cleanup(store, clock):
    store.set_values([StoredResult("r", "v", ttl=10), StoredResult("kept", "k")])

    clock.advance(9.5)
    assert store.get_values(["r", "kept"]) == ["v", "k"]
    clock.advance(0.5)
    assert store.get_values(["r", "kept"]) == [None, "k"]
    assert store.values_with_prefix("") == {"kept": "k"}

    store.cleanup()
    assert store.conn.execute("SELECT key FROM kv").fetchall() == [("kept",)]


def test_add_value_takes_the_place_of_an_expired_value(store, clock):
    assert store.add_value("once", "a", ttl=5)
    assert not store.add_value("once", "b", ttl=5)

    clock.advance(5)
    assert store.add_value("once", "b", ttl=5)
    assert store.get_value("once") == "b"


def test_incr_starts_again_from_zero_once_expired_and_keeps_its_expiry_without_a_ttl(
        store, clock):
    assert store.incr("n", 2, ttl=10) == 2
    clock.advance(6)
    assert store.incr("n") == 3  # no ttl: expires at the first expiry still
    clock.advance(4)
    assert store.get_value("n") is None
    assert store.incr("n") == 1


def test_a_lease_is_held_until_its_expiry_by_the_clock(store, clock):
    assert store.acquire_lease("beat", "a", ttl=30)
    clock.advance(29.5)
    assert not store.acquire_lease("beat", "b", ttl=30)
    clock.advance(0.5)
    assert store.acquire_lease("beat", "b", ttl=30)
    store.release_lease("beat", "a")  # not a's any more: nothing happens
    assert not store.acquire_lease("beat", "a", ttl=30)
    store.release_lease("beat", "b")
    assert store.acquire_lease("beat", "a", ttl=30)


def test_many_values_are_read_in_chunks(store):
    store.set_values([StoredResult(f"k{n}", str(n)) for n in range(1200)])

    assert store.get_values([f"k{n}" for n in range(1200)] + ["none"]) == [
        *(str(n) for n in range(1200)), None]
