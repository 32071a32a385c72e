"""The in-memory transport: what unit tests rely on beyond the shared contract (which
tests/integration/test_transport_contract.py checks on it too): named stores, `join`, a
clock that alone decides expiry, and subscriptions without a descriptor."""

from __future__ import annotations

import threading
import uuid

import pytest

from fleet.engine.transport import open_transport
from fleet.engine.transport.base import ConsumerInfo, Outgoing, StoredResult
from fleet.engine.transport.clock import ManualClock
from fleet.engine.transport.memory import MemoryTransport


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(start=1_000_000.0)


@pytest.fixture
def memory(clock: ManualClock) -> MemoryTransport:
    return open_transport(f"memory://{uuid.uuid4().hex}", clock=clock)


def message(queue: str = "q", eta: float | None = None) -> Outgoing:
    return Outgoing(uuid.uuid4().hex, queue, "{}", eta=eta)


def test_transports_of_one_name_share_a_store_and_other_names_do_not(memory):
    same = open_transport(memory.url)
    other = open_transport(f"memory://{uuid.uuid4().hex}")

    memory.put([message()])

    assert len(same.reserve("c#1", ["q"], 5)) == 1
    assert other.reserve("c#1", ["q"], 5) == []


def test_join_returns_once_a_consumer_thread_has_acked_everything(memory):
    memory.put([message() for _ in range(20)])
    memory.put([message("elsewhere")])  # another queue does not hold join up

    def consume() -> None:
        while got := memory.reserve("c#1", ["q"], 3):
            memory.ack("c#1", [d.id for d in got])

    thread = threading.Thread(target=consume)
    thread.start()
    memory.join(["q"], timeout=5)
    thread.join()

    assert memory.reserve("c#2", ["q"], 5) == []


def test_join_counts_reserved_and_scheduled_messages_as_not_done(memory, clock):
    memory.put([message(eta=clock.time() + 60)])
    with pytest.raises(TimeoutError, match="still hold messages"):
        memory.join(["q"], timeout=0.01)

    clock.advance(60)
    [held] = memory.reserve("c#1", ["q"], 5)
    with pytest.raises(TimeoutError):
        memory.join(["q"], timeout=0.01)

    memory.dead_letter("c#1", held, "unknown task")
    memory.join(["q"], timeout=0.01)


def test_the_clock_alone_decides_etas_recovery_leases_and_expiry(memory, clock):
    memory.put([message(eta=clock.time() + 5)])
    memory.register(ConsumerInfo("w#1", "w", ["q"], 1, "h"))
    memory.set_values([StoredResult("r", "v", ttl=5)])
    assert memory.acquire_lease("beat", "a", ttl=5)

    assert memory.reserve("w#1", ["q"], 5) == []
    assert memory.recover(timeout=5).dead_consumers == []

    clock.advance(5)
    assert len(memory.reserve("w#1", ["q"], 5)) == 1  # due at its eta
    assert memory.get_value("r") is None  # expired at its ttl
    assert memory.acquire_lease("beat", "b", ttl=5)  # free at its expiry
    assert memory.recover(timeout=5).dead_consumers == []  # silent for exactly 5 s
    clock.advance(0.5)
    assert memory.recover(timeout=5).dead_consumers == ["w#1"]


def test_incr_keeps_its_expiry_unless_given_a_new_ttl(memory, clock):
    memory.incr("n", ttl=10)
    clock.advance(6)
    memory.incr("n")  # no ttl: the first expiry stands

    clock.advance(4)
    assert memory.get_value("n") is None
    memory.incr("n", ttl=10)
    clock.advance(6)
    memory.incr("n", ttl=10)  # a ttl restarts the expiry
    clock.advance(6)
    assert memory.get_value("n") == "2"


def test_a_subscription_is_polled_and_sees_only_its_channels_and_queues(memory):
    subscription = memory.subscribe(["control"], wake_queues=["q"])

    assert subscription.fileno() is None
    assert subscription.poll_interval == 0.01
    assert subscription.poll() == ([], True)  # new: worth one look at the queues
    memory.publish("elsewhere", "x")
    memory.put([message("other")])
    assert subscription.poll() == ([], False)

    memory.publish("control", "ping")
    memory.put([message("q")])
    assert subscription.poll() == ([("control", "ping")], True)

    subscription.close()
    memory.publish("control", "after close")
    assert subscription.poll() == ([], False)


def test_consumers_holding_messages_are_known_even_unregistered(memory, clock):
    memory.put([message()])
    memory.reserve("ghost#1", ["q"], 5)

    [record] = memory.consumers()

    assert (record.consumer_id, record.node, record.queues) == ("ghost#1", "ghost", ["q"])
    assert record.last_heartbeat == clock.time()
