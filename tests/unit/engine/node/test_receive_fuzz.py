"""One bad entry costs only itself: a real node's receive path (its consumer's round trip on
a memory broker, the dispatch buffer, starting jobs in children) driven with bodies of every
shape (hypothesis). The node never stops, and every body either becomes a job or lands in
the dead-letter queue with a reason."""

from __future__ import annotations

import time

from hypothesis import given

from fleet.engine import message as codec
from fleet.engine.node.jobs import RUNNING
from fleet.engine.transport.base import Outgoing
from tests.strategies import BODIES, PROPERTY, mutated_messages
from tests.unit.engine.node.fakes import close_node, make_app, make_node


def _take(node, body: str) -> str:
    """Put `body` on the node's queue, let its consumer reserve it and its dispatcher start
    it; return where it went: "job" or "dead"."""
    msg_id = codec.new_id()
    node.app.broker.put([Outgoing(msg_id, "default", body)])
    consumer = node.consumer
    consumer.want_fetch, consumer.retry_at, consumer.last_fetch = True, 0.0, 0.0
    consumer.exchange(time.monotonic())
    node.dispatcher.dispatch()
    held = {job.delivery.id for _, job in node.jobs.held()}
    dead = {letter.id: letter.reason for letter in node.app.broker.dead_letters(5)}
    settled = set(consumer.batch.acks)  # refused: revoked or expired before it ran
    assert node.state == RUNNING
    where = [name for name, ids in (("job", held), ("dead", dead), ("settled", settled))
             if msg_id in ids]
    assert len(where) == 1, f"a job, a dead letter or settled, one of them: {where}"
    if msg_id in dead:
        assert dead[msg_id]  # always a reason
    _forget_jobs(node)
    return where[0]


def _forget_jobs(node) -> None:
    """Settle nothing, just make room again (the children are records: see fakes.py)."""
    for child in node.children.pool.children.values():
        child.job = None
    node.jobs.active.clear()
    node.jobs.buffer.clear()
    node.jobs.scheduled.clear()
    node.jobs.throttled.clear()
    batch = node.consumer.batch
    for name in ("results", "puts", "started", "acks", "requeues"):
        getattr(batch, name).clear()


def _with_node(check) -> None:
    app = make_app()
    node = make_node(app)
    try:
        check(node)
    finally:
        close_node(node)
        app.close()


def test_no_body_stops_the_receive_path():
    seen: dict[str, int] = {}

    @PROPERTY
    @given(BODIES)
    def receive(node, body):
        where = _take(node, body)
        seen[where] = seen.get(where, 0) + 1

    _with_node(receive)
    assert seen.get("dead", 0) > 0


def test_messages_with_any_field_changed_become_jobs_or_dead_letters():
    seen: dict[str, int] = {}

    @PROPERTY
    @given(mutated_messages("units.fast") | mutated_messages("units.limited"))
    def receive(node, body):
        where = _take(node, body)
        seen[where] = seen.get(where, 0) + 1

    _with_node(receive)
    assert seen.get("job", 0) > 0 and seen.get("dead", 0) > 0


def test_an_expired_message_is_settled_not_run():
    def check(node):
        body = codec.build("units.fast", [1], {}, expires=1.0).encode()
        assert _take(node, body) == "settled"

    _with_node(check)


def test_an_exception_while_receiving_dead_letters_that_delivery_only(monkeypatch):
    def broken_emit(*args):
        raise RuntimeError("a bug met while receiving")

    def check(node):
        good = codec.build("units.fast", [1], {}).encode()
        monkeypatch.setattr(node.dispatcher, "_receive", lambda delivery: broken_emit())
        assert _take(node, good) == "dead"
        (letter,) = node.app.broker.dead_letters(1)
        assert "could not be received: RuntimeError: a bug met while receiving" in letter.reason
        monkeypatch.undo()
        assert _take(node, good) == "job"  # the next one is received as usual

    _with_node(check)


def test_an_exception_while_starting_a_job_dead_letters_it_and_frees_the_child(monkeypatch):
    def check(node):
        from fleet.engine.node import dispatch

        def bad_limits(*args):
            raise TypeError("unsupported operand")

        monkeypatch.setattr(dispatch, "time_limits", bad_limits)
        assert _take(node, codec.build("units.fast", [1], {}).encode()) == "dead"
        assert all(child.idle for child in node.children.pool.children.values())
        monkeypatch.undo()
        assert _take(node, codec.build("units.fast", [2], {}).encode()) == "job"

    _with_node(check)
