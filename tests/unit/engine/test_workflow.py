"""What a finished task sends next (`follow_up`): chain continuations, errbacks, chords."""

from __future__ import annotations

import pytest

from fleet import chord
from fleet.engine import states
from fleet.engine.results import exception_meta, success_meta
from fleet.engine.workflow import follow_up
from fleet.exceptions import BrokerUnavailable
from tests.unit.engine.support import make_app, sent, tasks


@pytest.fixture
def app():
    app = make_app()
    yield app
    app.close()


def _finish(app, msg, value):
    return follow_up(app, msg, success_meta(msg.id, value))


def _fail(app, msg, exc):
    return follow_up(app, msg, exception_meta(msg.id, states.FAILURE, exc, None, task=msg.task))


def test_success_sends_the_next_chain_task_with_the_result_prepended(app):
    add, mul, _ = tasks(app)
    result = (add.s(1, 1) | mul.s(8) | mul.s(10)).delay()
    (first,) = sent(app)
    plan = _finish(app, first, 2)
    (second,) = plan.messages
    assert second.task == "t.mul" and second.args == [2, 8]
    assert second.parent_id == first.id and second.root_id == first.id
    assert second.callbacks["chain"][0]["options"]["task_id"] == result.id


def test_failure_fails_the_rest_of_the_chain_and_calls_errbacks(app):
    add, mul, _ = tasks(app)
    errback = add.s("extra")
    errback.freeze()
    result = (add.s(1, 1) | mul.s(8) | mul.s(10)).apply_async(link_error=errback)
    (first,) = sent(app)
    plan = _fail(app, first, ValueError("nope"))
    assert [m["id"] for m in plan.metas] == [result.parent.id, result.id]
    assert all(m["state"] == states.FAILURE and m["exc_message"] == "nope" for m in plan.metas)
    (call,) = plan.messages
    assert call.id == errback.id and call.args == [
        first.id, {"task": "t.add", "exc_type": "ValueError", "exc_module": "builtins",
                   "exc_message": "nope"}, "extra"]


def test_only_the_last_header_task_sends_the_chord_body_and_only_once(app):
    add, _, xsum = tasks(app)
    result = chord(add.s(i, i) for i in range(3))(xsum.s())
    header = sent(app)
    plans = [_finish(app, msg, i * 2) for i, msg in enumerate(header)]
    assert [len(p.messages) for p in plans] == [0, 0, 1]
    (body,) = plans[2].messages
    assert body.id == result.id and body.args == [[0, 2, 4]]
    assert _finish(app, header[1], 2).messages == []  # a redelivered member is not recounted


def test_a_failed_header_task_fails_the_chord_once(app):
    add, _, xsum = tasks(app)
    errback = add.s()
    errback.freeze()
    body = xsum.s()
    body.link_error(errback)
    result = chord([add.s(i, i) for i in range(3)], body).delay()
    header = sent(app)
    failed = _fail(app, header[0], ValueError("bad header"))
    assert [m["id"] for m in failed.metas] == [result.id]
    assert [m.id for m in failed.messages] == [errback.id]
    assert _fail(app, header[1], ValueError("again")).metas == []  # the chord failed once
    assert [len(_finish(app, m, 0).messages) for m in header[1:]] == [0, 0]


def _break(store, monkeypatch, method, times=1):
    """Make `store.method` raise BrokerUnavailable (a transient error) `times` times."""
    real, left = getattr(store, method), [times]

    def broken(*args, **kwargs):
        if left[0] > 0:
            left[0] -= 1
            raise BrokerUnavailable("injected: the result store is down")
        return real(*args, **kwargs)

    monkeypatch.setattr(store, method, broken)


@pytest.mark.parametrize("method", ["incr", "add_value", "get_metas"])
def test_a_follow_up_repeated_with_its_token_after_a_store_error_counts_once(app, monkeypatch,
                                                                             method):
    # Regression: a repeat found its own member claim and skipped counting: the chord hung.
    add, _, xsum = tasks(app)
    result = chord(add.s(i, i) for i in range(2))(xsum.s())
    first, last = sent(app)
    assert _finish(app, first, 0).messages == []
    store = app.backend if method == "get_metas" else app.result_store
    _break(store, monkeypatch, method)
    meta = success_meta(last.id, 2)
    with pytest.raises(BrokerUnavailable):
        follow_up(app, last, meta, token="attempt")
    (body,) = follow_up(app, last, meta, token="attempt").messages
    assert body.id == result.id and body.args == [[0, 2]]
    assert follow_up(app, last, meta, token="redelivery").messages == []
