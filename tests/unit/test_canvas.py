"""Signature algebra and the workflow follow-ups, without nodes (memory transport)."""

from __future__ import annotations

import json
import time
import uuid
from types import SimpleNamespace

import pytest

from fleet import Fleet, GroupResult, Signature, chain, chord, group, signature
from fleet.engine import message as codec
from fleet.engine import states
from fleet.engine.canvas import Chain, Chord, Group
from fleet.engine.results import exception_meta, load_group, success_meta
from fleet.engine.transport.base import Batch
from fleet.engine.workflow import FollowUps, follow_up
from fleet.exceptions import BrokerUnavailable


@pytest.fixture
def app():
    app = Fleet("t", broker=f"memory://{uuid.uuid4().hex}")

    @app.task(name="t.add")
    def add(x, y):
        return x + y

    @app.task(name="t.mul")
    def mul(x, y):
        return x * y

    @app.task(name="t.xsum")
    def xsum(numbers):
        return sum(numbers)

    yield app
    app.close()


def tasks(app):
    return app.tasks["t.add"], app.tasks["t.mul"], app.tasks["t.xsum"]


def sent(app, queue="default"):
    """Every message put on `queue`, decoded, in order."""
    return [codec.decode(d.body) for d in app.broker.reserve("test", [queue], 1000, 3600)]


# -- building signatures ------------------------------------------------------------------------


def test_call_arguments_are_prepended_and_kwargs_merged(app):
    add, _, _ = tasks(app)
    sig = add.s(4)
    assert sig(6) == 10
    assert sig.clone((6,), {"y": 1}).args == (6, 4) and sig.clone((6,), {"y": 1}).kwargs == {"y": 1}
    assert sig.args == (4,)  # clone never changes the original


def test_an_immutable_signature_ignores_partial_arguments(app):
    add, _, _ = tasks(app)
    sig = add.si(2, 3)
    assert sig.immutable and sig.clone((100,)).args == (2, 3)
    assert sig(100) == 5


def test_signature_spellings_agree(app):
    add, _, _ = tasks(app)
    by_name = signature("t.add", (1,), {"y": 2}, app=app, countdown=3)
    assert by_name == add.signature((1,), {"y": 2}, countdown=3) == add.subtask((1,), {"y": 2},
                                                                                 countdown=3)
    assert by_name.options == {"countdown": 3}
    assert by_name.set(queue="q") is by_name and by_name.options["queue"] == "q"


def test_a_signature_without_an_app_says_how_to_give_it_one():
    with pytest.raises(TypeError, match="has no app"):
        signature("t.add", (1, 2)).delay()


def test_pipes_flatten_into_one_chain(app):
    add, mul, _ = tasks(app)
    workflow = add.s(1) | mul.s(2) | (add.s(3) | mul.s(4))
    assert isinstance(workflow, Chain)
    assert [t.task for t in workflow.tasks] == ["t.add", "t.mul", "t.add", "t.mul"]


def test_a_group_followed_by_a_task_becomes_a_chord(app):
    add, mul, xsum = tasks(app)
    assert isinstance(group(add.s(1), add.s(2)) | xsum.s(), Chord)
    workflow = chain(add.s(1, 1), group(mul.s(2), mul.s(3)), xsum.s(), add.s(10))
    assert [type(t) for t in workflow.tasks] == [Signature, Chord, Signature]
    assert workflow.tasks[1].body.task == "t.xsum"


def test_every_kind_round_trips_through_json(app):
    add, mul, xsum = tasks(app)
    errback = add.s(0)
    workflow = chain(add.s(1, 1).set(countdown=2), group(mul.s(2), mul.si(3, 3)), xsum.s(),
                     add.s(10))
    workflow.tasks[-1].link_error(errback)
    text = json.dumps(workflow.to_dict())
    back = Signature.from_dict(json.loads(text), app)
    assert back == workflow and repr(back) == repr(workflow)
    assert back.tasks[-1].options["link_error"] == [errback]
    assert back.tasks[1].header.tasks[1].immutable
    with pytest.raises(TypeError, match="unknown signature kind"):
        Signature.from_dict({"kind": "nope"}, app)


# -- freezing: ids and result handles -----------------------------------------------------------


def test_a_frozen_chain_returns_the_last_result_with_parents(app):
    add, mul, xsum = tasks(app)
    workflow = chain(add.s(1, 1), group(mul.s(2), mul.s(3)), xsum.s(), add.s(5))
    result = workflow.freeze()
    assert result.id == workflow.tasks[-1].id
    chord_result = result.parent
    assert chord_result.id == workflow.tasks[1].body.id
    header = chord_result.parent
    assert isinstance(header, GroupResult) and [r.id for r in header] == \
        [t.id for t in workflow.tasks[1].header.tasks]
    assert header.parent.id == workflow.tasks[0].id and header.parent.parent is None


def test_freezing_keeps_an_existing_id(app):
    add, _, _ = tasks(app)
    sig = add.s(1, 2).set(task_id="fixed")
    assert sig.freeze().id == "fixed"


# -- applying: the messages sent now ------------------------------------------------------------


def test_applying_a_chain_sends_its_first_task_carrying_the_rest(app):
    add, mul, _ = tasks(app)
    result = (add.s(4) | mul.s(8) | mul.s(10)).apply_async((4,))
    (first,) = sent(app)
    assert first.task == "t.add" and first.args == [4, 4]
    rest = first.callbacks["chain"]
    assert [d["task"] for d in rest] == ["t.mul", "t.mul"]
    assert rest[-1]["options"]["task_id"] == result.id


def test_chain_options_go_to_every_task_but_countdown_only_to_the_first(app):
    add, mul, _ = tasks(app)
    (add.s(1, 1) | mul.s(2)).apply_async(countdown=30, queue="q", priority=7)
    (first,) = sent(app, "q")
    assert first.eta is not None and first.priority == 7
    (rest,) = first.callbacks["chain"]
    assert rest["options"] == {"queue": "q", "priority": 7, "task_id": rest["options"]["task_id"]}
    with pytest.raises(TypeError, match="use a chord"):
        group(add.s(1, 1)).apply_async(link=mul.s(2))


def test_applying_a_group_sends_every_member_with_the_group_id(app):
    add, _, _ = tasks(app)
    result = group(add.s(i) for i in range(3))(10)
    messages = sent(app)
    assert [m.args for m in messages] == [[10, 0], [10, 1], [10, 2]]
    assert {m.group_id for m in messages} == {result.id}
    assert [m.id for m in messages] == [r.id for r in result]


def test_applying_a_chord_stores_the_member_list_and_tags_each_header_task(app):
    add, _, xsum = tasks(app)
    result = chord(add.s(i, i) for i in range(4))(xsum.s())
    messages = sent(app)
    header = result.parent
    assert load_group(app, header.id) == [m.id for m in messages] == [r.id for r in header]
    info = messages[0].callbacks["chord"]
    assert info["group"] == header.id and info["size"] == 4
    assert info["body"]["task"] == "t.xsum" and info["body"]["options"]["task_id"] == result.id


# -- following up: what a finished task sends ---------------------------------------------------


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


def test_the_node_retries_follow_ups_with_backoff_while_the_store_fails(app, monkeypatch):
    add, _, xsum = tasks(app)
    result = chord(add.s(i, i) for i in range(2))(xsum.s())
    first, _ = sent(app)
    node = SimpleNamespace(app=app, conf=app.conf, name="n1@h", batch=Batch(),
                           backend=app.backend)
    follow_ups = FollowUps(node)
    _break(app.result_store, monkeypatch, "add_value", times=2)  # claiming the chord fails
    failed = exception_meta(first.id, states.FAILURE, ValueError("nope"), None, task="t.add")
    follow_ups.add(first, failed)
    due = follow_ups.timer[0]
    assert due > time.monotonic() and node.batch.results == []
    assert follow_ups.retry(due) > due  # still failing: it backs off further
    assert follow_ups.retry(due + 60) == float("inf")
    assert follow_ups.waiting == []
    (body,) = node.batch.results  # the chord's result: the header's failure
    assert body.key.endswith(result.id) and '"exc_message":"nope"' in body.value


def test_a_follow_up_that_cannot_be_built_fails_the_task_with_a_clear_error(app):
    # Regression: the error was only logged; the task looked successful and its chain hung.
    from fleet.engine.execute import Outcome
    from fleet.engine.workflow import add_to_outcome

    add, mul, _ = tasks(app)
    (add.s(1, 1) | mul.s(8)).delay()
    (first,) = sent(app)
    first.callbacks["chain"] = [{"kind": "bogus"}]
    done = Outcome(first.id, states.SUCCESS, 0.1, "2", codec.dumps(success_meta(first.id, 2)))
    failed = add_to_outcome(app, first, done)
    assert failed.state == states.FAILURE and failed.send == []
    meta = codec.loads(failed.meta)
    assert "what follows it in its workflow could not be sent" in meta["exc_message"]
    assert "unknown signature kind 'bogus'" in meta["exc_message"]
    assert failed.header()["follow_up"]["meta"] == failed.meta  # the node follows it up


# -- map, starmap, chunks, built-in tasks -------------------------------------------------------


def test_map_starmap_and_chunks_are_signatures_of_builtin_tasks(app):
    add, _, xsum = tasks(app)
    assert xsum.map([[1, 2], [3]]).args == ("t.xsum", [[1, 2], [3]])
    assert add.starmap([(1, 2)]).task == "fleet.starmap"
    chunked = add.chunks([(i, i) for i in range(5)], 2)
    assert isinstance(chunked, Group) and [t.args[1] for t in chunked.tasks] == \
        [[[0, 0], [1, 1]], [[2, 2], [3, 3]], [[4, 4]]]
    assert app.tasks["fleet.starmap"]("t.add", [[1, 2], [3, 4]]) == [3, 7]
    assert "fleet.map" not in set(app.tasks)  # found by name, never listed
    with pytest.raises(ValueError, match="at least 1"):
        add.chunks([], 0)
