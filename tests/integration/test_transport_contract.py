"""The transport contract (fleet/engine/transport/base.py), checked against every transport.

Each test runs once per transport through the `transport_url` fixture; a transport whose
module is not written yet is skipped. Each test pins one behaviour and fails if it breaks.

The transports read the time from `manual_clock` (see fleet/engine/transport/clock.py), so
heartbeats, recovery, leases and etas expire when a test advances the clock, at once and
exactly, never by sleeping. The one thing no client clock moves is the TTL of a Redis key
(results, counters), which the server expires on its own clock: the few tests of value
expiry advance the clock and then poll, which on Redis waits the value's short TTL.
"""

from __future__ import annotations

import os
import select
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fleet.engine.transport import open_transport
from fleet.engine.transport.base import (
    DEAD_LETTER_QUEUE,
    Batch,
    ConsumerInfo,
    Delivery,
    Outgoing,
    Pending,
    ReserveRequest,
    StoredResult,
    Subscription,
    Transport,
)
from fleet.engine.transport.clock import ManualClock

# Generous deadlines: a loaded CI machine must not turn them into flaky failures, and the
# loops return as soon as the condition holds.
DEADLINE = 5.0


@pytest.fixture
def transport(transport_url: str, manual_clock: ManualClock) -> Iterator[Transport]:
    opened = open_transport(transport_url, clock=manual_clock)
    yield opened
    opened.close()


@pytest.fixture
def second(transport_url: str, manual_clock: ManualClock) -> Iterator[Transport]:
    """Another transport object on the same store (as another node would have)."""
    opened = open_transport(transport_url, clock=manual_clock)
    yield opened
    opened.close()


def message(queue: str = "q", priority: int = 0, eta: float | None = None,
            body: str | None = None) -> Outgoing:
    msg_id = uuid.uuid4().hex
    return Outgoing(id=msg_id, queue=queue, body=body or f'{{"id": "{msg_id}"}}',
                    priority=priority, eta=eta)


def consumer(consumer_id: str, queues: list[str] | None = None, **info: Any) -> ConsumerInfo:
    return ConsumerInfo(consumer_id=consumer_id, node=consumer_id.split("#", 1)[0],
                        queues=queues or ["q"], pid=os.getpid(), host="testhost", info=info)


def ids(deliveries: list[Delivery]) -> list[str]:
    return [delivery.id for delivery in deliveries]


def wait_for(condition: Callable[[], Any], timeout: float = DEADLINE,
             interval: float = 0.02) -> Any:
    """Call `condition` until it returns something truthy; fail at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(interval)


def stats_of(transport: Transport, name: str) -> Any:
    return next((entry for entry in transport.queue_stats() if entry.name == name), None)


def wait_readable(subscription: Subscription, timeout: float) -> None:
    """Wait the way a node does: on the descriptor, or one poll interval without one."""
    fd = subscription.fileno()
    if fd is None:
        time.sleep(min(timeout, subscription.poll_interval))
    else:
        select.select([fd], [], [], timeout)


def poll_until(subscription: Subscription, condition: Callable[[list, bool], bool],
               timeout: float = DEADLINE) -> tuple[list[tuple[str, str]], bool]:
    """Poll, accumulating broadcasts and wakeups, until `condition(broadcasts, woken)`."""
    broadcasts: list[tuple[str, str]] = []
    woken = False
    deadline = time.monotonic() + timeout
    while not condition(broadcasts, woken):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            pytest.fail(f"subscription saw only {broadcasts!r}, woken={woken}")
        wait_readable(subscription, min(remaining, 0.5))
        got, was_woken = subscription.poll()
        broadcasts += got
        woken = woken or was_woken
    return broadcasts, woken


# -- producing and consuming --------------------------------------------------------------


def test_reserve_returns_messages_of_one_priority_first_in_first_out(transport):
    sent = [message() for _ in range(5)]
    transport.put(sent)

    got = transport.reserve("c#1", ["q"], limit=10)

    assert ids(got) == [out.id for out in sent]
    assert [(d.queue, d.body, d.redelivered) for d in got] == [
        ("q", out.body, False) for out in sent]


def test_messages_put_one_call_at_a_time_keep_their_order(transport):
    sent = [message() for _ in range(4)]
    for out in sent:
        transport.put([out])

    assert ids(transport.reserve("c#1", ["q"], limit=10)) == [out.id for out in sent]


def test_reserve_returns_highest_priority_first_across_queues(transport):
    low = message("a", priority=0)
    mid_b = message("b", priority=5)
    top = message("a", priority=9)
    mid_a = message("a", priority=5)
    transport.put([low, mid_b, top, mid_a])

    got = transport.reserve("c#1", ["a", "b"], limit=10)

    assert ids(got) == [top.id, mid_b.id, mid_a.id, low.id]
    assert [d.priority for d in got] == [9, 5, 5, 0]


def test_reserve_takes_the_oldest_across_queues_not_queue_by_queue(transport):
    sent = [message("a"), message("b"), message("a"), message("b")]
    transport.put(sent)

    got = transport.reserve("c#1", ["a", "b"], limit=3)

    assert ids(got) == [out.id for out in sent[:3]]


def test_reserve_never_returns_more_than_limit(transport):
    transport.put([message() for _ in range(5)])

    sizes = [len(transport.reserve("c#1", ["q"], limit=2)) for _ in range(4)]

    assert sizes == [2, 2, 1, 0]


def test_reserve_returns_empty_at_once_when_nothing_is_due(transport, manual_clock):
    transport.put([message("other"), message(eta=manual_clock.time() + 60)])

    started = time.monotonic()
    got = transport.reserve("c#1", ["q", "never-used"], limit=5)

    assert got == []
    assert time.monotonic() - started < 1.0


def test_reserve_only_takes_from_the_given_queues(transport):
    mine, theirs = message("mine"), message("theirs")
    transport.put([theirs, mine])

    assert ids(transport.reserve("c#1", ["mine"], limit=5)) == [mine.id]


def test_reserved_message_is_not_handed_to_another_consumer(transport, second):
    transport.put([message()])

    assert len(transport.reserve("c#1", ["q"], limit=5)) == 1
    assert second.reserve("c#2", ["q"], limit=5) == []


def test_message_is_not_reserved_before_its_eta_then_is(transport, manual_clock):
    scheduled = message(eta=manual_clock.time() + 30)
    transport.put([scheduled])

    assert transport.reserve("c#1", ["q"], limit=5) == []
    manual_clock.advance(29.5)
    assert transport.reserve("c#1", ["q"], limit=5) == []
    manual_clock.advance(0.5)  # due at its eta exactly

    assert ids(transport.reserve("c#1", ["q"], limit=5)) == [scheduled.id]


def test_horizon_reserves_messages_due_within_it(transport, manual_clock):
    later = message(eta=manual_clock.time() + 30)
    transport.put([later])

    assert transport.reserve("c#1", ["q"], limit=5, horizon=10) == []
    assert ids(transport.reserve("c#1", ["q"], limit=5, horizon=60)) == [later.id]


def test_message_with_a_past_eta_is_reserved_at_once(transport, manual_clock):
    late = message(eta=manual_clock.time() - 5)
    transport.put([late])

    assert ids(transport.reserve("c#1", ["q"], limit=5)) == [late.id]


def test_ack_deletes_the_message(transport):
    transport.put([message()])
    [got] = transport.reserve("c#1", ["q"], limit=5)

    transport.ack("c#1", [got.id])
    transport.unregister("c#1")  # would requeue it if it were still reserved

    assert transport.reserve("c#2", ["q"], limit=5) == []
    assert stats_of(transport, "q").reserved == 0


def test_requeue_puts_the_message_back_ahead_of_newer_ones_and_marks_it(transport):
    first = message()
    transport.put([first])
    transport.reserve("c#1", ["q"], limit=5)
    newer = message()
    transport.put([newer])

    transport.requeue("c#1", [first.id])
    got = transport.reserve("c#2", ["q"], limit=5)

    assert ids(got) == [first.id, newer.id]
    assert [d.redelivered for d in got] == [True, False]


def test_requeue_keeps_the_message_priority(transport):
    urgent = message(priority=7)
    transport.put([urgent])
    transport.reserve("c#1", ["q"], limit=5)
    transport.put([message(priority=3)])

    transport.requeue("c#1", [urgent.id])
    got = transport.reserve("c#2", ["q"], limit=1)

    assert [(d.id, d.priority) for d in got] == [(urgent.id, 7)]


def test_requeued_scheduled_message_waits_for_its_eta_again(transport, manual_clock):
    held = message(eta=manual_clock.time() + 60)
    transport.put([held])
    assert ids(transport.reserve("c#1", ["q"], limit=5, horizon=120)) == [held.id]

    transport.requeue("c#1", [held.id])

    assert transport.reserve("c#2", ["q"], limit=5) == []
    assert ids(transport.reserve("c#2", ["q"], limit=5, horizon=120)) == [held.id]
    transport.requeue("c#2", [held.id])
    manual_clock.advance(60)
    assert ids(transport.reserve("c#2", ["q"], limit=5)) == [held.id]


def test_two_consumers_never_get_the_same_message(transport_url, transport, manual_clock):
    batch = [message() for _ in range(500)]
    transport.put(batch)
    taken: dict[str, list[str]] = {"c#1": [], "c#2": []}
    start = threading.Barrier(2)

    def consume(consumer_id: str) -> None:
        own = open_transport(transport_url, clock=manual_clock)
        try:
            start.wait()
            while got := own.reserve(consumer_id, ["q"], limit=7):
                taken[consumer_id] += ids(got)
                own.ack(consumer_id, ids(got))
        finally:
            own.close()

    threads = [threading.Thread(target=consume, args=(cid,)) for cid in taken]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    everything = taken["c#1"] + taken["c#2"]
    assert len(everything) == len(set(everything)) == 500
    assert set(everything) == {out.id for out in batch}


# -- commit ---------------------------------------------------------------------------------


def test_commit_applies_results_puts_and_acks_together(transport):
    done = message()
    transport.put([done])
    transport.reserve("c#1", ["q"], limit=5)
    follow_up = message("next")

    transport.commit("c#1", Batch(results=[StoredResult(f"result:{done.id}", '"ok"', 60)],
                                  puts=[follow_up], acks=[done.id]))

    assert transport.get_value(f"result:{done.id}") == '"ok"'
    assert ids(transport.reserve("c#1", ["q", "next"], limit=5)) == [follow_up.id]
    assert stats_of(transport, "q").reserved == 0


def test_commit_applies_requeues_and_acks_of_one_batch(transport):
    keep, drop = message(), message()
    transport.put([keep, drop])
    transport.reserve("c#1", ["q"], limit=5)

    transport.commit("c#1", Batch(acks=[drop.id], requeues=[keep.id]))

    assert ids(transport.reserve("c#2", ["q"], limit=5)) == [keep.id]


def test_empty_commit_is_harmless(transport):
    transport.commit("c#1", Batch())

    assert transport.reserve("c#1", ["q"], limit=5) == []


def test_ack_of_a_message_the_consumer_does_not_hold_is_ignored(transport):
    waiting = message()
    transport.put([waiting])

    transport.ack("c#1", [waiting.id, "no-such-id"])

    assert ids(transport.reserve("c#2", ["q"], limit=5)) == [waiting.id]


# -- consumers: liveness and recovery -------------------------------------------------------


def test_register_and_heartbeat_are_listed_with_their_info(transport, manual_clock):
    transport.register(consumer("w1@h#1", ["q", "r"], active=0))
    first = {c.consumer_id: c for c in transport.consumers()}["w1@h#1"]
    manual_clock.advance(1.5)

    transport.heartbeat(consumer("w1@h#1", ["q", "r"], active=3))
    [record] = transport.consumers()

    assert (record.node, record.queues, record.pid, record.host) == (
        "w1@h", ["q", "r"], os.getpid(), "testhost")
    assert record.info == {"active": 3}
    assert record.last_heartbeat == first.last_heartbeat + 1.5 == manual_clock.time()


def test_recover_requeues_a_dead_consumers_unstarted_messages(transport, manual_clock):
    waiting, running = message(), message()
    transport.put([waiting, running])
    transport.register(consumer("dead#1"))
    transport.reserve("dead#1", ["q"], limit=5)
    transport.mark_started("dead#1", [running.id])
    manual_clock.advance(11)

    report = transport.recover(timeout=10)

    assert report.dead_consumers == ["dead#1"]
    assert report.requeued == 1
    got = transport.reserve("c#2", ["q"], limit=5)
    assert [(d.id, d.redelivered) for d in got] == [(waiting.id, True)]


def test_recover_reports_started_messages_lost_and_does_not_requeue_them(transport,
                                                                         manual_clock):
    running = message(body='{"task": "charge-card"}')
    transport.put([running])
    transport.register(consumer("dead#1"))
    transport.reserve("dead#1", ["q"], limit=5)
    transport.mark_started("dead#1", [running.id])
    manual_clock.advance(11)

    report = transport.recover(timeout=10)

    assert [(cid, d.id, d.queue, d.body) for cid, d in report.lost] == [
        ("dead#1", running.id, "q", '{"task": "charge-card"}')]
    assert report.requeued == 0
    assert transport.reserve("c#2", ["q"], limit=5) == []
    assert stats_of(transport, "q").reserved == 0


def test_recover_leaves_live_consumers_alone(transport, manual_clock):
    transport.put([message(), message()])
    transport.register(consumer("dead#1"))
    transport.reserve("dead#1", ["q"], limit=1)
    manual_clock.advance(11)
    transport.register(consumer("live#1"))
    [held] = transport.reserve("live#1", ["q"], limit=1)

    report = transport.recover(timeout=10)

    assert report.dead_consumers == ["dead#1"]
    assert [c.consumer_id for c in transport.consumers()] == ["live#1"]
    assert held.id not in ids(transport.reserve("c#3", ["q"], limit=5))
    transport.ack("live#1", [held.id])  # it still holds it


def test_recover_with_nobody_dead_does_nothing(transport):
    transport.put([message()])
    transport.register(consumer("live#1"))
    transport.reserve("live#1", ["q"], limit=5)

    report = transport.recover(timeout=60)

    assert (report.dead_consumers, report.requeued, report.lost) == ([], 0, [])
    assert stats_of(transport, "q").reserved == 1


def test_a_consumer_is_dead_only_once_silent_for_longer_than_the_timeout(transport,
                                                                          manual_clock):
    transport.register(consumer("w#1"))

    manual_clock.advance(10)
    assert transport.recover(timeout=10).dead_consumers == []  # silent for exactly 10 s
    manual_clock.advance(0.5)
    assert transport.recover(timeout=10).dead_consumers == ["w#1"]


def test_heartbeats_keep_a_message_reserved_however_long_it_is_held(transport, manual_clock):
    """Redelivery follows the consumer's liveness, not the message's age (STYLE.md 10)."""
    held = message()
    transport.put([held])
    transport.register(consumer("w#1"))
    transport.reserve("w#1", ["q"], limit=5)

    for _ in range(6):  # a minute in all, six times the timeout
        manual_clock.advance(9.5)
        transport.heartbeat(consumer("w#1"))
        assert transport.recover(timeout=10).dead_consumers == []

    assert transport.reserve("c#2", ["q"], limit=5) == []
    assert stats_of(transport, "q").reserved == 1
    manual_clock.advance(10.5)  # then the heartbeats stop
    assert transport.recover(timeout=10).dead_consumers == ["w#1"]
    assert ids(transport.reserve("c#2", ["q"], limit=5)) == [held.id]


def test_concurrent_recover_recovers_each_dead_consumer_once(transport_url, transport,
                                                            manual_clock):
    transport.put([message() for _ in range(15)])
    for number in range(5):
        transport.register(consumer(f"dead#{number}"))
        transport.reserve(f"dead#{number}", ["q"], limit=3)
    manual_clock.advance(11)
    reports = []
    start = threading.Barrier(4)

    def recover() -> None:
        own = open_transport(transport_url, clock=manual_clock)
        try:
            start.wait()
            reports.append(own.recover(timeout=10))
        finally:
            own.close()

    threads = [threading.Thread(target=recover) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    dead = [cid for report in reports for cid in report.dead_consumers]
    assert sorted(dead) == [f"dead#{number}" for number in range(5)]
    assert sum(report.requeued for report in reports) == 15
    assert len(transport.reserve("c#9", ["q"], limit=100)) == 15


def test_late_ack_from_a_recovered_consumer_does_not_delete_the_requeued_message(
        transport, manual_clock):
    slow = message()
    transport.put([slow])
    transport.register(consumer("paused#1"))
    transport.reserve("paused#1", ["q"], limit=5)
    manual_clock.advance(11)
    transport.recover(timeout=10)

    transport.ack("paused#1", [slow.id])  # it wakes up and acks what it no longer owns

    assert ids(transport.reserve("c#2", ["q"], limit=5)) == [slow.id]


def test_unregister_requeues_what_the_consumer_still_holds(transport):
    sent = [message(), message()]
    transport.put(sent)
    transport.register(consumer("w#1"))
    transport.reserve("w#1", ["q"], limit=5)

    transport.unregister("w#1")

    assert transport.consumers() == []
    got = transport.reserve("w#2", ["q"], limit=5)
    assert ids(got) == [out.id for out in sent]
    assert all(d.redelivered for d in got)


# -- purge, stats, dead letters ---------------------------------------------------------------


def test_purge_counts_ready_and_scheduled_messages_and_leaves_reserved_alone(transport,
                                                                             manual_clock):
    transport.put([message(), message(), message(), message(eta=manual_clock.time() + 60),
                   message("other")])
    [held] = transport.reserve("c#1", ["q"], limit=1)

    count = transport.purge(["q"])

    assert count == 3
    assert transport.reserve("c#2", ["q"], limit=10, horizon=120) == []
    assert stats_of(transport, "q").reserved == 1
    assert stats_of(transport, "other").ready == 1
    transport.requeue("c#1", [held.id])
    assert ids(transport.reserve("c#2", ["q"], limit=10)) == [held.id]


def test_purge_of_an_empty_or_unknown_queue_counts_zero(transport):
    assert transport.purge(["nothing-here"]) == 0


def test_queue_stats_counts_ready_scheduled_reserved_and_consumers(transport, manual_clock):
    transport.put([message("q"), message("q"), message("q"),
                   message("q", eta=manual_clock.time() + 60), message("r")])
    transport.register(consumer("w#1", ["q"]))
    transport.register(consumer("w#2", ["q", "r"]))
    transport.reserve("w#1", ["q"], limit=1)

    stats = {entry.name: entry for entry in transport.queue_stats()}

    q, r = stats["q"], stats["r"]
    assert (q.ready, q.scheduled, q.reserved, q.consumers) == (2, 1, 1, 2)
    assert (r.ready, r.scheduled, r.reserved, r.consumers) == (1, 0, 0, 1)


def test_queue_stats_are_sorted_and_include_queues_only_consumed(transport):
    transport.put([message("zeta"), message("alpha")])
    transport.register(consumer("w#1", ["middle"]))

    names = [entry.name for entry in transport.queue_stats()]

    assert names == ["alpha", "middle", "zeta"]


def test_dead_letter_records_the_reason_and_acks_the_message(transport, manual_clock):
    bad = message(body="not json")
    transport.put([bad])
    [got] = transport.reserve("c#1", ["q"], limit=5)
    manual_clock.advance(2)

    transport.dead_letter("c#1", got, "undecodable: Expecting value")
    transport.unregister("c#1")  # would requeue it if it were still reserved

    [letter] = transport.dead_letters()
    assert (letter.id, letter.queue, letter.body, letter.reason) == (
        bad.id, "q", "not json", "undecodable: Expecting value")
    assert abs(letter.at - manual_clock.time()) < 0.01  # Redis keeps it as JSON: 4 decimals
    assert transport.reserve("c#2", ["q"], limit=5) == []
    assert stats_of(transport, DEAD_LETTER_QUEUE).ready == 1


def test_dead_letters_are_newest_first_and_limited(transport):
    sent = [message() for _ in range(3)]
    transport.put(sent)
    for delivery in transport.reserve("c#1", ["q"], limit=5):
        transport.dead_letter("c#1", delivery, f"reason {delivery.id}")

    letters = transport.dead_letters(limit=2)

    assert [letter.id for letter in letters] == [sent[2].id, sent[1].id]


def test_purging_the_dead_letter_queue_empties_it(transport):
    transport.put([message(), message()])
    for delivery in transport.reserve("c#1", ["q"], limit=5):
        transport.dead_letter("c#1", delivery, "unknown task")

    assert transport.purge([DEAD_LETTER_QUEUE]) == 2
    assert transport.dead_letters() == []
    assert stats_of(transport, DEAD_LETTER_QUEUE) is None


# -- subscriptions --------------------------------------------------------------------------


def test_subscriber_receives_broadcasts_on_its_channels_only(transport, second):
    subscription = transport.subscribe(["control"])
    try:
        second.publish("elsewhere", "ignored")
        second.publish("control", '{"cmd": "ping"}')
        second.publish("control", '{"cmd": "stats"}')

        broadcasts, _ = poll_until(subscription, lambda got, _: len(got) >= 2)

        assert broadcasts == [("control", '{"cmd": "ping"}'), ("control", '{"cmd": "stats"}')]
    finally:
        subscription.close()


def test_put_to_an_empty_queue_wakes_its_subscribers(transport, second):
    subscription = transport.subscribe([], wake_queues=["q"])
    try:
        subscription.poll()  # start from a clean slate
        second.put([message("q")])

        _, woken = poll_until(subscription, lambda _, woken: woken)

        assert woken
    finally:
        subscription.close()


def test_subscription_with_a_descriptor_stays_quiet_without_news(transport):
    subscription = transport.subscribe(["control"], wake_queues=["q"])
    try:
        if subscription.fileno() is None:
            pytest.skip("this transport cannot tell, so it may always report woken")
        subscription.poll()
        transport.put([message("other-queue")])
        readable, _, _ = select.select([subscription.fileno()], [], [], 0.2)

        assert readable == []
        assert subscription.poll() == ([], False)
    finally:
        subscription.close()


# -- small values ---------------------------------------------------------------------------


def test_set_and_get_values(transport):
    transport.set_values([StoredResult("a", "1"), StoredResult("b", '{"x": 2}', ttl=60)])

    assert transport.get_value("a") == "1"
    assert transport.get_values(["b", "missing", "a"]) == ['{"x": 2}', None, "1"]


def test_set_values_overwrites(transport):
    transport.set_values([StoredResult("a", "old")])
    transport.set_values([StoredResult("a", "new")])

    assert transport.get_value("a") == "new"


def expire_values(clock: ManualClock, ttl: float, gone: Callable[[], bool]) -> None:
    """Let `ttl` seconds pass for values: advance the clock (SQLite and memory expire values
    by it), then poll until `gone()`; on Redis that waits for the server to expire the key,
    which no client clock can move, so keep such ttls short."""
    clock.advance(ttl)
    wait_for(gone)


def test_value_expires_after_its_ttl(transport, manual_clock):
    transport.set_values([StoredResult("short", "v", ttl=0.2), StoredResult("kept", "v")])

    assert transport.get_value("short") == "v"
    expire_values(manual_clock, 0.25, lambda: transport.get_value("short") is None)
    assert transport.get_value("kept") == "v"


def test_delete_values(transport):
    transport.set_values([StoredResult("a", "1"), StoredResult("b", "2")])

    transport.delete_values(["a", "missing"])

    assert transport.get_values(["a", "b"]) == [None, "2"]


def test_wait_value_returns_a_stored_value_at_once(transport):
    transport.set_values([StoredResult("ready", "v")])

    assert transport.wait_value("ready", DEADLINE) == "v"
    assert transport.wait_value("missing", 0) is None


def test_wait_value_times_out_with_what_is_stored(transport):
    transport.set_values([StoredResult("same", "v")])

    assert transport.wait_value("missing", 0.05) is None
    assert transport.wait_value("same", 0.05, previous="v") == "v"


def _store_later(store: Transport, action: Callable[[], None]) -> threading.Thread:
    """Run `action` on `store` from another thread once the waiter is (very likely) waiting."""
    store.get_value("warm-up")  # opened here, not racing the waiter to create the store

    def run() -> None:
        time.sleep(0.1)
        action()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.parametrize("how", ["set_values", "commit"])
def test_wait_value_wakes_when_another_client_stores_the_value(transport, second, how):
    if how == "set_values":
        thread = _store_later(second, lambda: second.set_values([StoredResult("r", "done")]))
    else:
        batch = Batch(results=[StoredResult("r", "done", ttl=60)])
        thread = _store_later(second, lambda: second.commit("c1", batch))
    try:
        assert transport.wait_value("r", DEADLINE) == "done"
    finally:
        thread.join()


def test_wait_value_waits_for_a_value_different_from_previous(transport, second):
    transport.set_values([StoredResult("state", "started")])
    thread = _store_later(second, lambda: second.set_values([StoredResult("state", "ok")]))
    try:
        assert transport.wait_value("state", DEADLINE, previous="started") == "ok"
    finally:
        thread.join()


def test_wait_value_of_several_waiters_all_end_with_the_value(transport_url, second,
                                                             manual_clock):
    """A notifying store may wake only one waiter per store: the others still get the value
    on their next slice, as callers wait in short slices."""
    stores = [open_transport(transport_url, clock=manual_clock) for _ in range(2)]
    for store in [*stores, second]:  # opened here, not racing each other from the threads
        store.get_value("warm-up")
    seen: list[str | None] = []

    def waiter(store: Transport) -> None:
        deadline = time.monotonic() + DEADLINE
        value = None
        while value is None and time.monotonic() < deadline:
            value = store.wait_value("shared", 0.2)
        seen.append(value)

    threads = [threading.Thread(target=waiter, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.05)
        second.set_values([StoredResult("shared", "v")])
    finally:
        for thread in threads:
            thread.join()
        for store in stores:
            store.close()
    assert seen == ["v", "v"]


def test_deleted_value_is_not_returned_by_a_later_wait(transport):
    transport.set_values([StoredResult("gone", "v")])
    transport.delete_values(["gone"])

    assert transport.wait_value("gone", 0.05) is None


def test_add_value_stores_only_if_absent(transport, manual_clock):
    assert transport.add_value("once", "first", ttl=0.2) is True
    assert transport.add_value("once", "second") is False
    assert transport.get_value("once") == "first"

    expire_values(manual_clock, 0.25, lambda: transport.get_value("once") is None)
    assert transport.add_value("once", "third") is True
    assert transport.get_value("once") == "third"


def test_values_with_prefix_matches_the_prefix_literally(transport, manual_clock):
    transport.set_values([StoredResult("job*[1]:a", "1"), StoredResult("job*[1]:b", "2"),
                          StoredResult("jobx1:c", "3"), StoredResult("other", "4"),
                          StoredResult("job*[1]:gone", "5", ttl=0.1)])
    expire_values(manual_clock, 0.25, lambda: transport.get_value("job*[1]:gone") is None)

    assert transport.values_with_prefix("job*[1]:") == {"job*[1]:a": "1", "job*[1]:b": "2"}
    assert transport.values_with_prefix("nothing") == {}


def test_incr_counts_from_zero_by_amount(transport):
    assert transport.incr("n") == 1
    assert transport.incr("n", 5) == 6
    assert transport.incr("n", -2) == 4
    assert transport.get_value("n") == "4"


def test_incr_is_atomic_under_concurrency(transport_url, manual_clock):
    start = threading.Barrier(6)

    def bump() -> None:
        own = open_transport(transport_url, clock=manual_clock)
        try:
            start.wait()
            for _ in range(100):
                own.incr("counter")
        finally:
            own.close()

    threads = [threading.Thread(target=bump) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    reader = open_transport(transport_url, clock=manual_clock)
    try:
        assert reader.get_value("counter") == "600"
    finally:
        reader.close()


def test_incr_with_ttl_expires(transport, manual_clock):
    assert transport.incr("window", ttl=0.2) == 1

    expire_values(manual_clock, 0.25, lambda: transport.get_value("window") is None)
    assert transport.incr("window") == 1


def test_lease_is_refused_to_another_owner_until_it_expires(transport, manual_clock):
    assert transport.acquire_lease("beat", "node-a", ttl=30) is True
    assert transport.acquire_lease("beat", "node-b", ttl=30) is False

    manual_clock.advance(29.5)
    assert transport.acquire_lease("beat", "node-b", ttl=30) is False
    manual_clock.advance(0.5)  # free at its expiry exactly
    assert transport.acquire_lease("beat", "node-b", ttl=30) is True
    assert transport.acquire_lease("beat", "node-a", ttl=30) is False


def test_lease_is_renewed_by_its_owner(transport, manual_clock):
    assert transport.acquire_lease("beat", "node-a", ttl=30) is True
    manual_clock.advance(20)
    assert transport.acquire_lease("beat", "node-a", ttl=30) is True
    manual_clock.advance(20)  # past the first lease's expiry, within the renewal's

    assert transport.acquire_lease("beat", "node-b", ttl=30) is False
    manual_clock.advance(10)
    assert transport.acquire_lease("beat", "node-b", ttl=30) is True


def test_lease_is_released_only_by_its_owner(transport):
    transport.acquire_lease("beat", "node-a", ttl=30)

    transport.release_lease("beat", "node-b")
    assert transport.acquire_lease("beat", "node-b", ttl=30) is False

    transport.release_lease("beat", "node-a")
    assert transport.acquire_lease("beat", "node-b", ttl=30) is True


# -- processes --------------------------------------------------------------------------------


def test_forked_child_can_use_the_same_transport_object(transport_url, transport):
    """The parent used the transport before forking; the child must not share its
    connection (or its lock-holding state) and must still work."""
    shared_store = not transport_url.startswith("memory://")
    first = message()
    transport.put([first])
    transport.set_values([StoredResult("before-fork", "1")])

    pid = os.fork()
    if pid == 0:  # the child: report through the exit code only
        code = 1
        try:
            got = transport.reserve("child#1", ["q"], limit=5)
            transport.ack("child#1", ids(got))
            transport.incr("child-ran")
            code = 0 if ids(got) == [first.id] else 2
        finally:
            os._exit(code)
    # The parent keeps using its own connection while the child works.
    for _ in range(50):
        assert transport.get_value("before-fork") == "1"
    _, status = os.waitpid(pid, 0)

    assert os.waitstatus_to_exitcode(status) == 0
    assert transport.get_value("before-fork") == "1"
    if shared_store:
        assert transport.get_value("child-ran") == "1"
        assert transport.reserve("parent#1", ["q"], limit=5) == []


def finished(pending: Pending) -> list[Delivery]:
    """Wait for a submit's reply the way a node does (readable fd), then take its result."""
    fd = pending.fileno()
    if fd is not None:
        assert select.select([fd], [], [], DEADLINE)[0], "no reply to submit"
    return pending.result()


def test_submit_applies_the_batch_then_reserves_in_one_go(transport):
    transport.put([message() for _ in range(3)])
    [first] = transport.reserve("w#1", ["q"], limit=1)
    pending = transport.submit("w#1", Batch(acks=[first.id], results=[StoredResult("k", "v")]),
                               ReserveRequest(["q"], 5))
    got = finished(pending)
    assert len(got) == 2 and first.id not in {d.id for d in got}
    assert transport.get_value("k") == "v"
    [stats] = [s for s in transport.queue_stats() if s.name == "q"]
    assert (stats.ready, stats.reserved) == (0, 2)


def test_submit_without_a_reserve_request_only_commits(transport):
    transport.put([message()])
    pending = transport.submit("w#1", Batch(results=[StoredResult("k", "1")]))
    assert finished(pending) == []
    assert transport.get_value("k") == "1"
    [stats] = [s for s in transport.queue_stats() if s.name == "q"]
    assert stats.ready == 1
