"""The broker as a node sees it, without processes (memory transport): one round trip that
commits and reserves, batching of commits, backoff that keeps the work, recovery, and what
the node reports with its heartbeats."""

from __future__ import annotations

import json
import time
import uuid

import pytest

from fleet import Fleet
from fleet.engine import states
from fleet.engine.node.consumer import FLUSH_DELAY, FLUSH_SIZE
from fleet.engine.node.jobs import WARM
from fleet.engine.sending import build_message
from fleet.engine.transport.base import Batch, Done, Outgoing, StoredResult
from fleet.exceptions import BrokerUnavailable
from tests.unit.engine.node.fakes import close_node, job, make_node


def put(app, *xs: int, **options) -> list[str]:
    """Queue a units.fast message per x; their ids."""
    messages = [build_message(app, "units.fast", (x,), {}, options) for x in xs]
    app.broker.put([Outgoing(m.id, m.queue, m.encode(), m.priority, m.eta) for m in messages])
    return [m.id for m in messages]


def test_one_round_trip_commits_the_batch_and_receives_what_it_reserved(app, node):
    put(app, 1, 2, 3)
    node.consumer.batch.requeues.append("nothing-here")
    node.consumer.exchange(time.monotonic())
    assert [j.message.args for j in node.jobs.buffer] == [[1], [2], [3]]
    assert not node.consumer.batch
    assert not node.consumer.want_fetch  # it came back with less than it asked for


def test_a_node_that_is_not_ready_or_stopping_reserves_nothing(app, node):
    put(app, 1)
    node.ready = False
    node.consumer.exchange(time.monotonic())
    node.ready, node.state = True, WARM
    node.consumer.exchange(time.monotonic())
    assert not node.jobs.buffer


def test_messages_reserved_while_the_node_began_to_stop_go_back(app, node):
    (sent,) = put(app, 1)
    (reserved,) = app.broker.reserve(node.consumer.id, ["default"], 1, 60)
    node.state = WARM  # ... while the round trip was under way
    node.consumer._pending, node.consumer._pending_wanted = Done([reserved]), 1
    node.consumer.on_pending()
    assert node.consumer.batch.requeues == [sent] and not node.jobs.buffer


def test_commits_wait_for_more_while_tasks_run_but_not_for_long(app, node):
    running = job(app, "fast", 1)
    node.jobs.active[running.delivery.id] = running
    node.ready = False  # (no reserve: only the flush rules decide)
    consumer = node.consumer
    consumer.batch.acks.append("a")
    now = time.monotonic()
    consumer.exchange(now)
    assert consumer.batch.acks == ["a"]  # too young, too small, tasks running
    consumer.exchange(now + 2 * FLUSH_DELAY)
    assert not consumer.batch
    consumer.batch.acks.extend(f"x{i}" for i in range(FLUSH_SIZE))
    consumer.exchange(now + 2 * FLUSH_DELAY)
    assert not consumer.batch  # big enough: at once
    node.jobs.active.clear()
    consumer.batch.acks.append("b")
    consumer.exchange(now + 2 * FLUSH_DELAY)
    assert not consumer.batch  # nothing running: at once


def test_a_failed_round_trip_keeps_its_work_in_front_and_backs_off(app, node, monkeypatch):
    consumer = node.consumer
    monkeypatch.setattr(app.broker, "submit",
                        lambda *a: Done(error=BrokerUnavailable("injected: broker down")))
    consumer.batch.acks.append("first")
    now = time.monotonic()
    consumer.exchange(now)
    assert consumer.failures == 1 and consumer.retry_at > now
    consumer.batch.acks.append("second")
    assert consumer.batch.acks == ["first", "second"]
    consumer.exchange(now)  # backing off: no round trip
    assert consumer.failures == 1
    first_delay = consumer.retry_at - now
    consumer.exchange(consumer.retry_at)
    assert consumer.failures == 2 and consumer.retry_at - now > first_delay
    monkeypatch.undo()
    consumer.exchange(consumer.retry_at)
    assert consumer.failures == 0 and not consumer.batch


def test_with_a_separate_result_store_results_are_stored_there_before_the_acks(monkeypatch):
    app = Fleet("units", broker=f"memory://{uuid.uuid4().hex}",
                backend=f"memory://{uuid.uuid4().hex}")
    node = make_node(app)
    consumer = node.consumer
    result = StoredResult("result:t1", '{"state": "SUCCESS"}', None)
    consumer.batch = Batch(results=[result], acks=["m1"])
    real = app.result_store.set_values

    def down(values):
        raise BrokerUnavailable("injected: result store down")

    monkeypatch.setattr(app.result_store, "set_values", down)
    consumer.flush()
    assert consumer.batch.results == [result] and consumer.batch.acks == ["m1"]
    monkeypatch.setattr(app.result_store, "set_values", real)
    consumer.flush(final=True)
    assert app.result_store.get_value("result:t1") and app.broker.get_value("result:t1") is None
    close_node(node)
    app.close()


def test_an_early_acked_task_of_a_dead_node_is_reported_lost_not_run_again(app, node):
    lost: list = []
    node.hooks["lost"].append(lambda n, msg, meta: lost.append(meta["id"]))
    (task_id,) = put(app, 1)
    dead = "dead@h#1"
    app.broker.reserve(dead, ["default"], 1, 60)
    app.broker.commit(dead, Batch(started=[task_id]))
    info, _ = app.broker.store.consumers[dead]
    app.broker.store.consumers[dead] = (info, time.time() - 3600)
    node.consumer.recover_dead_nodes()
    assert lost == [task_id]
    meta = json.loads(node.consumer.batch.results[0].value)
    assert meta["state"] == states.FAILURE and meta["node"] == "dead@h"
    assert "node dead@h died while the task ran" in meta["exc_message"]


def test_a_heartbeat_says_what_the_node_does_and_whether_it_consumes(app, node):
    node.jobs.processed["units.fast"] += 3
    info = node.consumer.heartbeat_info()
    assert (info["active"], info["processed"], info["concurrency"]) == (0, 3, 2)
    assert info["state"] == "running" and info["ready"] and info["children_up"] == 2
    assert info["hungry"] and info["broker_failures"] == 0
    (record,) = [r for r in app.broker.consumers() if r.node == "unit@test"]
    node.consumer.heartbeat(time.monotonic())
    (after,) = [r for r in app.broker.consumers() if r.node == "unit@test"]
    assert after.info["processed"] == 3 and after.last_heartbeat >= record.last_heartbeat


def test_broadcasts_reach_the_broadcast_hooks(app, node):
    heard: list = []
    node.hooks["broadcast"].append(lambda n, channel, payload: heard.append((channel, payload)))
    node.consumer.channels.append("control")
    node.consumer._resubscribe()
    app.broker.publish("control", "hello")
    node.consumer.poll_subscription(time.monotonic())
    assert heard == [("control", "hello")]


def test_moving_a_message_to_the_dead_letter_queue_keeps_it_if_the_broker_fails(app, node,
                                                                              monkeypatch):
    put(app, 1)
    (got,) = app.broker.reserve(node.consumer.id, ["default"], 1, 60)

    def down(*args):
        raise BrokerUnavailable("injected")

    monkeypatch.setattr(app.broker, "dead_letter", down)
    node.consumer.dead_letter(got, "a reason")
    assert node.consumer.batch.requeues == [got.id] and node.consumer.failures == 1


@pytest.mark.parametrize("kind", ["acks", "requeues"])
def test_a_restored_batch_goes_before_what_came_since(node, kind):
    consumer = node.consumer
    getattr(consumer.batch, kind).append("later")
    consumer._restore(Batch(**{kind: ["earlier"]}))
    assert getattr(consumer.batch, kind) == ["earlier", "later"]


def test_the_loop_sleeps_while_every_child_runs_a_long_task(app, node):
    # Regression (issue 13): past worker_prefetch_timeout the node wanted nothing, but its
    # fetch deadline stayed in the past, so the loop waited 0 s: it spun until the task ended.
    from tests.unit.engine.node.fakes import job

    for n, child in enumerate(node.children.pool.children.values()):
        long = job(app, "fast", n)
        node.dispatcher.start(long, child)
        long.started = time.monotonic() - 5  # running for 5 s already
    node.consumer.last_fetch = time.monotonic() - 10
    _nothing_else_due(node)
    assert node.dispatcher.wanted(time.monotonic()) == 0
    assert node._timeout() > 0.5


def _nothing_else_due(node) -> None:
    """No heartbeat, and no poll of the (memory) subscription, due for a while."""
    node.consumer.next_heartbeat = time.monotonic() + 10
    node.consumer._next_subscription_poll = time.monotonic() + 10


def test_the_loop_sleeps_through_a_broker_backoff(app, node, monkeypatch):
    consumer = node.consumer
    monkeypatch.setattr(app.broker, "submit",
                        lambda *a: Done(error=BrokerUnavailable("injected: broker down")))
    consumer.exchange(time.monotonic())
    _nothing_else_due(node)
    assert consumer.retry_at > time.monotonic()
    assert node._timeout() > 0.2  # (not 0 until the backoff ends)


def test_a_broker_data_error_is_ridden_out_and_never_called_unreachable(app, node, monkeypatch,
                                                                         caplog):
    import redis

    consumer = node.consumer
    wrongtype = redis.exceptions.ResponseError("WRONGTYPE Operation against a key")
    monkeypatch.setattr(app.broker, "data_errors", (redis.exceptions.ResponseError,))
    monkeypatch.setattr(app.broker, "submit", lambda *a: Done(error=wrongtype))
    consumer.batch.acks.append("kept")
    consumer.exchange(time.monotonic())
    assert consumer.failures == 1 and consumer.batch.acks == ["kept"]
    assert "Broker data error during commit/reserve (ResponseError: WRONGTYPE" in caplog.text
    assert "reachable but holds an entry fleet cannot use" in caplog.text


def test_a_data_error_in_side_work_never_delays_the_round_trips(app, node, caplog):
    # A bad entry met by a heartbeat hook (a revoke counter of the wrong type, ...) must not
    # back the node's commits and reserves off: the broker answers, only that entry is bad.
    from fleet.exceptions import BrokerDataError

    def bad_hook(node):
        raise BrokerDataError("the value 'revoked.version' in Redis cannot be read")

    node.hooks["heartbeat"].append(bad_hook)
    node.consumer.heartbeat(time.monotonic())
    assert node.consumer.retry_at == 0.0 and node.consumer.failures == 0
    assert "Broker data error during heartbeat hook (BrokerDataError" in caplog.text
