"""Tasks: options that fall back to the app's settings, direct calls, retrying, backoff."""

from __future__ import annotations

import uuid

import pytest

from fleet import Fleet
from fleet.engine.request import _current
from fleet.exceptions import MaxRetriesExceededError, Retry


@pytest.fixture
def app():
    app = Fleet("t", broker=f"memory://{uuid.uuid4().hex}")
    yield app
    app.close()


def test_options_not_set_on_the_task_follow_the_apps_settings_when_read(app):
    @app.task(name="t.plain")
    def plain():
        return None

    @app.task(name="t.own", acks_late=False, max_retries=None)
    def own():
        return None

    app.conf.update(task_acks_late=True, task_max_retries=7)
    assert plain.acks_late is True and plain.max_retries == 7
    assert own.acks_late is False and own.max_retries is None


def test_a_direct_call_runs_here_with_an_eager_request(app):
    @app.task(name="t.me", bind=True)
    def me(self, x):
        return (self.request.is_eager, self.request.args, x)

    assert me(5) == (True, [5], 5)
    assert not _current  # the request is gone once the call returns
    assert me.request.task == "t.me" and me.request.id is None


def test_retry_asks_for_a_later_run_and_gives_up_after_max_retries(app):
    @app.task(name="t.flaky", bind=True, max_retries=2, default_retry_delay=5)
    def flaky(self):
        return None

    from fleet.engine.request import Request

    _current.append((flaky, Request(id="r1", retries=1)))
    try:
        with pytest.raises(Retry) as asked:
            flaky.retry(args=[1], countdown=30)
        assert asked.value.args_override == [1] and asked.value.when > 0
        _current[-1] = (flaky, Request(id="r1", retries=2))
        with pytest.raises(MaxRetriesExceededError, match="exceeded its 2 retries"):
            flaky.retry()
        with pytest.raises(KeyError):
            flaky.retry(exc=KeyError("the original"))
    finally:
        _current.pop()


def test_retrying_a_direct_call_raises_the_error_instead(app):
    @app.task(name="t.direct", bind=True)
    def direct(self):
        raise self.retry(exc=ValueError("here and now"))

    with pytest.raises(ValueError, match="here and now"):
        direct()


@pytest.mark.parametrize(("backoff", "retries", "most"), [(True, 0, 1.0), (True, 3, 8.0),
                                                          (2.0, 3, 16.0), (True, 20, 600.0)])
def test_automatic_retries_back_off_exponentially_with_jitter_below_the_cap(app, backoff,
                                                                            retries, most):
    task = app.task(name=f"t.b{retries}", retry_backoff=backoff)(lambda: None)
    delays = [task.backoff_delay(retries) for _ in range(20)]
    assert all(0 <= delay <= most for delay in delays)
    steady = app.task(name=f"t.s{retries}", retry_backoff=backoff, retry_jitter=False)(
        lambda: None)
    assert steady.backoff_delay(retries) == most


def test_a_bad_rate_limit_is_refused_when_the_task_is_defined(app):
    from fleet.operator_errors import ConfigError

    with pytest.raises(ConfigError, match="invalid rate limit"):
        app.task(name="t.fast", rate_limit="lots")(lambda: None)


# -- custom states (issue 17) -------------------------------------------------------------------


def _execute(app, name, *args, events=False):
    from fleet.engine.execute import execute
    from fleet.engine.sending import build_message

    msg = build_message(app, name, args, {}, {})
    return msg, execute(app, msg, "w1@h", {"queue": "default"}, events=events)


def test_update_state_stores_a_custom_state_with_its_meta_and_sends_an_event(app):
    import json

    from fleet.engine import events

    seen = {}

    @app.task(name="t.crunch", bind=True)
    def crunch(self, total):
        self.update_state(state="PROGRESS", meta={"done": 1, "total": total})
        result = app.AsyncResult(self.request.id)
        seen.update(state=result.state, info=result.info)
        return total

    subscription = app.broker.subscribe([events.EVENTS_CHANNEL])
    msg, _ = _execute(app, "t.crunch", 3, events=True)
    assert seen == {"state": "PROGRESS", "info": {"done": 1, "total": 3}}
    [(_, payload)] = subscription.poll()[0]
    [event] = json.loads(payload)
    assert event["type"] == "task-updated" and event["uuid"] == msg.id
    assert (event["state"], event["info"], event["node"]) == ("PROGRESS", {"done": 1, "total": 3},
                                                              "w1@h")
    assert "state=\"PROGRESS\"" in events.format_event(event)
    _execute(app, "t.crunch", 4)  # the node sends no task events: no event
    assert subscription.poll()[0] == []


def test_update_state_refuses_outcome_states_and_needs_a_task_id(app):
    @app.task(name="t.bad", bind=True)
    def bad(self):
        self.update_state(state="SUCCESS", meta=1)

    _, outcome = _execute(app, "t.bad")
    assert outcome.state == "FAILURE" and "stores a task's outcome itself" in outcome.summary
    with pytest.raises(ValueError, match="no task id"):
        bad.update_state(state="PROGRESS")
    bad.update_state(task_id="other-id", state="PROGRESS", meta={"n": 1})
    assert app.AsyncResult("other-id").info == {"n": 1}


def test_info_is_the_result_of_a_success_and_the_exception_of_a_failure(app):
    from fleet.engine import message as codec

    @app.task(name="t.div")
    def div(x, y):
        return x / y

    results = []
    for args in ((4, 2), (1, 0)):
        msg, outcome = _execute(app, "t.div", *args)
        app.backend.save([codec.loads(outcome.meta)])
        results.append(app.AsyncResult(msg.id))
    ok, failed = results
    assert (ok.state, ok.info) == ("SUCCESS", 2.0)
    assert failed.state == "FAILURE" and isinstance(failed.info, ZeroDivisionError)


def test_shadow_names_the_call_in_logs_and_events_but_not_in_results(app):
    from fleet.engine.events import display_name
    from fleet.engine.sending import build_message

    add = app.task(name="t.add")(lambda x, y: x + y)
    msg = build_message(app, "t.add", (1, 2), {}, {"shadow": "t.add[fast path]"})
    assert msg.task == "t.add" and msg.options == {"shadow": "t.add[fast path]"}
    assert display_name(msg.task, msg.options) == "t.add[fast path]"
    assert display_name(msg.task, {}) == "t.add"
    with pytest.raises(TypeError, match="did you mean 'shadow'"):
        add.apply_async((1, 2), shadwo="x")
