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
