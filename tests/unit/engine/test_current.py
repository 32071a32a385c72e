"""The current app (issue 17): what `signature(name)`, `AsyncResult(id)`,
`GroupResult.restore(id)` and `@shared_task` use when no app is given."""

from __future__ import annotations

import uuid

import pytest

from fleet import AsyncResult, Fleet, GroupResult, group, shared_task, signature
from fleet.engine import current
from fleet.engine.results import ResultBackend
from fleet.exceptions import NoAppError
from tests.unit.engine.support import make_app, sent


@pytest.fixture(autouse=True)
def fresh_current(monkeypatch):
    """Each test starts with no current app and no shared tasks (restored afterwards)."""
    monkeypatch.setattr(current, "_default", None)
    monkeypatch.setattr(current, "_last", None)
    monkeypatch.setattr(current, "_shared", [])


def test_without_any_app_the_error_says_how_to_get_one():
    with pytest.raises(NoAppError) as raised:
        signature("proj.tasks.add", (2, 2)).delay()
    assert "create one first" in str(raised.value) and "set_default()" in str(raised.value)
    with pytest.raises(NoAppError):
        AsyncResult("some-id")


def test_the_last_app_created_is_current_unless_another_was_made_default():
    first, second = make_app("first"), make_app("second")
    assert current.current_app() is second
    assert first.set_default() is first
    make_app("third")
    assert current.current_app() is first
    current.set_default(None)
    assert current.current_app().main == "third"


def test_a_signature_by_name_is_sent_with_the_current_app():
    app = make_app()
    result = signature("t.add", args=(2, 2), countdown=10).delay()
    [msg] = sent(app)
    assert (msg.id, msg.task, msg.args) == (result.id, "t.add", [2, 2])
    assert result.app is app


def test_async_result_takes_the_id_by_keyword_and_says_its_backend():
    app = make_app()
    result = AsyncResult(id="abc")
    assert result.id == result.task_id == "abc" and result.app is app
    assert result.backend is app.backend and isinstance(result.backend, ResultBackend)
    assert AsyncResult(task_id="abc", app=app) == result
    other = make_app("other")
    assert AsyncResult("abc", backend=other.backend).app is other
    assert app.tasks["t.add"].AsyncResult("x").backend is app.tasks["t.add"].backend


def test_a_saved_group_is_restored_by_id_alone():
    app = make_app()
    add = app.tasks["t.add"]
    saved = group(add.s(1, 1), add.s(2, 2)).delay().save()
    restored = GroupResult.restore(saved.id)
    assert restored == saved and restored.app is app
    assert GroupResult.restore(uuid.uuid4().hex) is None


def test_a_shared_task_is_registered_with_every_app_and_used_through_the_current_one():
    early = make_app("early")

    @shared_task(name="shared.double", bind=True)
    def double(self, x):
        return (self.name, x * 2)

    late = make_app("late")
    assert "shared.double" in early.tasks and "shared.double" in late.tasks
    assert early.tasks["shared.double"] is not late.tasks["shared.double"]
    assert double(4) == ("shared.double", 8)  # a direct call runs it here
    result = double.delay(3)
    assert result.app is late and [m.task for m in sent(late)] == ["shared.double"]
    early.set_default()
    assert double.s(1).delay().app is early
    assert double.name == "shared.double" and double.__name__ == "double"


def test_a_shared_task_without_options_takes_its_module_and_function_name():
    app = Fleet("proj", broker=f"memory://{uuid.uuid4().hex}")

    @shared_task
    def ping():
        return "pong"

    assert f"{__name__}.ping" in app.tasks
    assert ping() == "pong" and ping.task is app.tasks[f"{__name__}.ping"]
