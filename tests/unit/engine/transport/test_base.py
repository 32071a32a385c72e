"""The contract's protocols, records and default methods (fleet/engine/transport/base.py)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from fleet.engine.transport.base import (
    MAX_PRIORITY,
    MIN_PRIORITY,
    Batch,
    Broadcasts,
    Connection,
    Delivery,
    Done,
    Liveness,
    Outgoing,
    QueueAdmin,
    Queues,
    ReserveRequest,
    StoredResult,
    Transport,
    Values,
    clamp_priority,
)
from fleet.engine.transport.clock import SYSTEM_CLOCK, ManualClock
from fleet.engine.transport.memory import MemoryTransport
from fleet.engine.transport.redis import RedisTransport
from fleet.engine.transport.sqlite import SQLiteTransport

PROTOCOLS = (Connection, Queues, QueueAdmin, Liveness, Broadcasts, Values)


class RecordingQueues(Queues):
    """Only the Queues protocol: records commits, reserves from a list."""

    def __init__(self, ready: list[Delivery] | None = None, fail: Exception | None = None):
        self.ready = list(ready or [])
        self.fail = fail
        self.commits: list[tuple[str, Batch]] = []

    def put(self, messages: Sequence[Outgoing]) -> None:
        raise AssertionError("not used")

    def reserve(self, consumer_id: str, queues: Sequence[str], limit: int,
                horizon: float = 0.0) -> list[Delivery]:
        taken, self.ready = self.ready[:limit], self.ready[limit:]
        return taken

    def commit(self, consumer_id: str, batch: Batch) -> None:
        if self.fail is not None:
            raise self.fail
        self.commits.append((consumer_id, batch))

    def dead_letter(self, consumer_id: str, delivery: Delivery, reason: str) -> None:
        raise AssertionError("not used")


class StaticValues(Values):
    """Only the Values protocol, over a dict that a test changes between reads."""

    def __init__(self, reads: list[str | None]):
        self.reads = reads

    def get_value(self, key: str) -> str | None:
        return self.reads.pop(0) if len(self.reads) > 1 else self.reads[0]

    set_values = delete_values = add_value = values_with_prefix = incr = None  # type: ignore[assignment]
    acquire_lease = release_lease = None  # type: ignore[assignment]


def test_transport_is_the_union_of_the_protocols():
    assert set(PROTOCOLS) <= set(Transport.__mro__)


def test_a_protocol_is_checked_by_its_methods_so_a_fake_qualifies():
    memory = MemoryTransport("memory://base-protocols")

    assert all(isinstance(memory, protocol) for protocol in PROTOCOLS)
    assert isinstance(RecordingQueues(), Queues)
    assert not isinstance(RecordingQueues(), Liveness)


@pytest.mark.parametrize("implementation", [MemoryTransport, SQLiteTransport, RedisTransport])
def test_every_transport_implements_every_protocol(implementation):
    assert issubclass(implementation, Transport)
    assert not implementation.__abstractmethods__


def test_a_transport_missing_a_primitive_cannot_be_made():
    class Incomplete(Transport):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Incomplete("x://")


def test_a_transport_keeps_its_url_options_and_clock():
    clock = ManualClock()
    transport = MemoryTransport("memory://base-keeps", {"a": 1}, clock)

    assert (transport.url, transport.options, transport.clock) == (
        "memory://base-keeps", {"a": 1}, clock)
    assert MemoryTransport("memory://base-default").clock is SYSTEM_CLOCK


def test_describe_masks_the_password():
    transport = RedisTransport("redis://:secret@127.0.0.1:1/0")

    assert transport.describe() == "redis://:********@127.0.0.1:1/0"


@pytest.mark.parametrize(("given", "clamped"), [(None, MIN_PRIORITY), (-3, MIN_PRIORITY),
                                                (4, 4), (42, MAX_PRIORITY), ("7", 7)])
def test_priorities_are_clamped_to_0_to_9(given, clamped):
    assert clamp_priority(given) == clamped


def test_a_batch_is_true_only_with_work_in_it():
    assert not Batch()
    assert Batch(acks=["a"])
    assert Batch(results=[StoredResult("k", "v")])


def test_ack_requeue_and_mark_started_are_commits_of_one_kind():
    queues = RecordingQueues()

    queues.ack("c#1", iter(["a"]))
    queues.requeue("c#1", ["b"])
    queues.mark_started("c#1", ["c"])

    assert queues.commits == [("c#1", Batch(acks=["a"])), ("c#1", Batch(requeues=["b"])),
                              ("c#1", Batch(started=["c"]))]


def test_the_default_submit_commits_then_reserves_at_once():
    ready = [Delivery(str(n), "q", "{}") for n in range(3)]
    queues = RecordingQueues(ready)

    pending = queues.submit("c#1", Batch(acks=["x"]), ReserveRequest(["q"], 2))

    assert pending.fileno() is None  # done already: nothing to wait on
    assert [d.id for d in pending.result()] == ["0", "1"]
    assert queues.commits == [("c#1", Batch(acks=["x"]))]
    assert queues.submit("c#1", Batch()).result() == []


def test_the_default_submit_hands_its_error_to_result():
    pending = RecordingQueues(fail=ConnectionError("gone")).submit("c#1", Batch(acks=["x"]))

    with pytest.raises(ConnectionError, match="gone"):
        pending.result()


def test_done_returns_its_deliveries_or_raises_its_error():
    delivery = Delivery("1", "q", "{}")

    assert Done([delivery]).result() == [delivery]
    assert Done().result() == []
    with pytest.raises(KeyError):
        Done(error=KeyError("k")).result()


def test_the_default_wait_value_returns_once_the_value_changes():
    values = StaticValues(["old", "old", "new"])

    assert values.wait_value("k", timeout=5, previous="old") == "new"
    assert values.get_values(["a", "b"]) == ["new", "new"]


def test_the_default_wait_value_returns_what_is_there_at_the_timeout():
    assert StaticValues(["same"]).wait_value("k", timeout=0.01, previous="same") == "same"
    assert StaticValues([None]).wait_value("k", timeout=0) is None
