"""What runs around a task where it runs: a Task subclass's handlers and the task hooks, in
Celery's order, for each outcome (executed in this process, as a pool child does)."""

from __future__ import annotations

import pytest

from fleet import Task, hooks
from fleet.engine import lifecycle, states
from fleet.engine.execute import execute
from fleet.engine.sending import build_message
from tests.unit.engine.support import make_app

TASK_HOOKS = ("task_prerun", "task_success", "task_failure", "task_retry", "task_postrun")


class Recording(Task):
    """A task class whose handlers write down what they were given."""

    calls: list = []

    def before_start(self, task_id, args, kwargs):
        self.calls.append(("before_start", args))

    def on_success(self, retval, task_id, args, kwargs):
        self.calls.append(("on_success", retval))

    def on_failure(self, exc, task_id, args, kwargs, einfo):
        self.calls.append(("on_failure", type(exc).__name__, "Traceback" in einfo.traceback))

    def on_retry(self, exc, task_id, args, kwargs, einfo):
        self.calls.append(("on_retry", str(exc)))

    def after_return(self, status, retval, task_id, args, kwargs, einfo):
        self.calls.append(("after_return", status))


@pytest.fixture
def app():
    app = make_app()

    @app.task(name="t.div", base=Recording, bind=True, max_retries=1)
    def div(self, x, y):
        if y == "retry":
            raise self.retry(exc=ValueError("again"), countdown=5)
        return x / y

    Recording.calls = []
    yield app
    app.close()


@pytest.fixture
def recorded():
    """Connect a receiver to every task hook; yields what they saw."""
    seen = []

    def record(signal, sender, **kwargs):
        detail = {key: kwargs[key] for key in ("result", "state", "retval") if key in kwargs}
        if "exception" in kwargs:
            detail["exception"] = type(kwargs["exception"]).__name__
        if "reason" in kwargs:
            detail["reason"] = str(kwargs["reason"])
        seen.append((signal.name, sender.name, detail))

    for name in TASK_HOOKS:
        getattr(hooks, name).connect(record)
    yield seen
    for name in TASK_HOOKS:
        getattr(hooks, name).disconnect(record)


def _run(app, name, *args):
    msg = build_message(app, name, args, {}, {})
    return execute(app, msg, "w1@h", {"queue": "default"})


def test_success_runs_the_handlers_and_hooks_in_celerys_order(app, recorded):
    assert _run(app, "t.div", 6, 3).state == states.SUCCESS
    assert Recording.calls == [("before_start", [6, 3]), ("on_success", 2.0),
                               ("after_return", "SUCCESS")]
    assert recorded == [("task_prerun", "t.div", {}),
                        ("task_success", "t.div", {"result": 2.0}),
                        ("task_postrun", "t.div", {"retval": 2.0, "state": "SUCCESS"})]


def test_failure_and_retry_get_their_own_handlers_and_hooks(app, recorded):
    assert _run(app, "t.div", 1, 0).state == states.FAILURE
    assert ("on_failure", "ZeroDivisionError", True) in Recording.calls
    assert ("task_failure", "t.div", {"exception": "ZeroDivisionError"}) in recorded
    Recording.calls.clear()
    recorded.clear()
    assert _run(app, "t.div", 1, "retry").state == states.RETRY
    assert Recording.calls[1:] == [("on_retry", "again"), ("after_return", "RETRY")]
    assert recorded[1] == ("task_retry", "t.div", {"reason": "again"})
    assert recorded[2][2]["state"] == "RETRY"


def test_a_failing_handler_or_hook_never_changes_the_outcome(app, caplog):
    def broken(**_):
        raise RuntimeError("hook broke")

    class Clumsy(Task):
        def on_success(self, retval, task_id, args, kwargs):
            raise RuntimeError("handler broke")

    app.task(name="t.clumsy", base=Clumsy)(lambda: 42)
    hooks.task_prerun.connect(broken)
    try:
        outcome = _run(app, "t.clumsy")
    finally:
        hooks.task_prerun.disconnect(broken)
    assert outcome.state == states.SUCCESS and outcome.summary == "42"
    assert "hook broke" in caplog.text and "handler broke" in caplog.text


def test_nothing_runs_around_a_plain_task_while_no_hook_has_receivers(app, monkeypatch):
    for name in TASK_HOOKS:  # (other tests' apps may have connected some in this process)
        monkeypatch.setattr(getattr(hooks, name), "receivers", ())
    monkeypatch.setattr(lifecycle, "_succeeded", None)  # would fail if it were reached
    assert _run(app, "t.add", 1, 2).state == states.SUCCESS


def test_options_may_be_class_attributes_of_a_base_class_and_the_decorator_wins(app):
    class Patient(Task):
        acks_late = True
        max_retries = 7
        queue = "slow"

    quick = app.task(name="t.quick", base=Patient, acks_late=False)(lambda: 1)
    slow = app.task(name="t.slow", base=Patient)(lambda: 1)
    assert isinstance(quick, Patient) and slow.queue == "slow"
    assert (quick.acks_late, slow.acks_late) == (False, True)
    assert slow.max_retries == 7 and quick.track_started is False  # others: app settings


def test_an_app_wide_task_class_and_a_bad_base_are_checked(app):
    app.task_cls = Recording
    assert isinstance(app.task(name="t.x")(lambda: 1), Recording)
    with pytest.raises(TypeError, match=r"subclass of fleet\.Task"):
        app.task(base=dict)(lambda: 1)
