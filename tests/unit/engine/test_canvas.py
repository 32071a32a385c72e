"""Signature algebra without nodes (memory transport): building, JSON, freezing, applying."""

from __future__ import annotations

import json

import pytest

from fleet import GroupResult, Signature, chain, chord, group, signature
from fleet.engine.canvas import Chain, Chord
from fleet.engine.results import load_group
from tests.unit.engine.support import make_app, sent, tasks


@pytest.fixture
def app():
    app = make_app()
    yield app
    app.close()


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


def test_a_signature_without_an_app_is_sent_with_the_current_app(app):
    """Issue 17: `signature(name, ...).delay()` without app= raised "has no app"; Celery
    sends it with the current app (here: the last one created)."""
    result = signature("t.add", (1, 2), countdown=10).delay()
    assert result.app is app
    [msg] = sent(app)
    assert (msg.id, msg.task, msg.args) == (result.id, "t.add", [1, 2])
    assert msg.eta is not None


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
