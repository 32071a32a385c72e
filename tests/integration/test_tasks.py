"""Tasks through a real node, on both brokers: results, routing, failures, retries."""

from __future__ import annotations

import time

import pytest

from fleet.engine import states
from fleet.exceptions import EncodeError, NotRegistered, RemoteError, TimeoutError


def test_delay_then_get_returns_the_result(app, nodes):
    nodes.start()
    from testapp import add

    assert add.delay(2, 2).get(timeout=10) == 4


def test_apply_async_honours_queue_and_countdown(app, nodes):
    nodes.start("-Q", "other")
    from testapp import add

    sent = time.time()
    result = add.apply_async((1, 2), queue="other", countdown=0.6)
    assert result.get(timeout=10) == 3
    assert result.date_done - sent >= 0.6


def test_a_task_sent_to_a_queue_nobody_consumes_stays_pending(app, nodes):
    nodes.start("-Q", "default")
    from testapp import add

    result = add.apply_async((1, 2), queue="elsewhere")
    with pytest.raises(TimeoutError):
        result.get(timeout=0.5)
    assert result.state == states.PENDING


def test_task_routes_and_task_queue_pick_the_queue(app, nodes):
    nodes.start("-Q", "routed,pinned")
    from testapp import pinned, route_me, whoami

    assert route_me.delay(7).get(timeout=10) == 7  # task_routes glob testapp.route_*
    assert pinned.delay(8).get(timeout=10) == 8  # @app.task(queue="pinned")
    info = whoami.apply_async(queue="routed").get(timeout=10)
    assert info["queue"] == "routed"
    assert info["hostname"].startswith("w1@")


def test_failure_reraises_the_same_type_with_the_remote_traceback(app, nodes):
    nodes.start()
    from testapp import CustomError, fail, fail_custom

    result = fail.delay("kaboom")
    with pytest.raises(ValueError, match="kaboom") as caught:
        result.get(timeout=10)
    notes = "\n".join(getattr(caught.value, "__notes__", []))
    assert "Remote traceback" in notes and "raise ValueError(message)" in notes
    assert result.state == states.FAILURE and result.failed()
    assert "testapp.py" in result.traceback
    assert "fleet/engine/execute.py" not in result.traceback  # only the task's own frames
    with pytest.raises(CustomError, match="custom"):
        fail_custom.delay().get(timeout=10)
    assert isinstance(result.get(timeout=1, propagate=False), ValueError)


def test_an_exception_type_unknown_here_becomes_remote_error(app, nodes):
    nodes.start()
    from fleet.engine.results import exception_from_meta

    exc = exception_from_meta({"exc_type": "Gone", "exc_module": "nowhere.at.all",
                               "exc_message": "lost", "traceback": "tb text"})
    assert isinstance(exc, RemoteError)
    assert (exc.exc_type, exc.exc_message, exc.traceback) == ("nowhere.at.all.Gone", "lost",
                                                              "tb text")


def test_unknown_ids_are_pending(app):
    result = app.AsyncResult("no-such-task-id")
    assert result.state == states.PENDING
    assert not result.ready()
    with pytest.raises(TimeoutError, match="still PENDING"):
        result.get(timeout=0.2)


def test_forget_deletes_the_stored_result(app, nodes):
    nodes.start()
    from testapp import add

    result = add.delay(3, 4)
    assert result.get(timeout=10) == 7
    result.forget()
    assert app.AsyncResult(result.id).state == states.PENDING


def test_ignore_result_stores_nothing(app, nodes):
    nodes.start(concurrency=1)
    from testapp import add, quiet

    ignored = quiet.delay(5)
    assert add.delay(1, 1).get(timeout=10) == 2  # one child, FIFO: quiet ran before
    assert app.result_store.get_value(f"result:{ignored.id}") is None
    assert app.AsyncResult(ignored.id).state == states.PENDING


def test_retry_runs_the_task_again_until_it_succeeds(app, nodes):
    nodes.start()
    from testapp import flaky

    result = flaky.delay(2)
    assert result.get(timeout=10) == 2


def test_a_result_json_cannot_hold_is_a_clear_failure(app, nodes):
    nodes.start()
    from testapp import unencodable

    with pytest.raises(EncodeError, match="cannot be encoded as JSON"):
        unencodable.delay().get(timeout=10)


def test_arguments_json_cannot_hold_are_refused_in_the_caller(app):
    from testapp import echo

    with pytest.raises(EncodeError, match="cannot be encoded as JSON"):
        echo.delay({1, 2})
    assert app.broker.queue_stats() == [] or all(
        s.ready == 0 for s in app.broker.queue_stats())


def test_calling_a_task_directly_runs_it_here(app):
    from testapp import add, whoami

    assert add(2, 3) == 5
    assert whoami()["hostname"] is None  # no node involved


def test_send_task_by_name_and_unknown_names_fail_clearly(app, nodes):
    nodes.start()
    assert app.send_task("testapp.add", (5, 5)).get(timeout=10) == 10
    unknown = app.send_task("testapp.does_not_exist")
    with pytest.raises(NotRegistered, match="does_not_exist"):
        unknown.get(timeout=10)


def test_higher_priority_runs_first(app, nodes):
    from testapp import echo

    low = [echo.apply_async((i,), priority=0) for i in range(3)]
    high = echo.apply_async(("urgent",), priority=9)
    nodes.start(concurrency=1)
    for result in [*low, high]:
        result.get(timeout=10)
    assert high.date_done <= min(r.date_done for r in low)


def test_track_started_stores_started_while_running(app, nodes):
    nodes.start()
    from testapp import sleep

    result = sleep.apply_async((1.0,), track_started=True)
    from tests.support import wait_for

    wait_for(lambda: result.state == states.STARTED, 5, message="STARTED")
    assert result.get(timeout=10) == 1.0


def test_results_expire_after_result_expires(app, nodes):
    nodes.start("--", "result_expires=0.4")
    from testapp import add

    result = add.delay(1, 1)
    assert result.get(timeout=10) == 2
    from tests.support import wait_for

    wait_for(lambda: app.AsyncResult(result.id).state == states.PENDING, 5,
             message="the result to expire")


def test_results_can_live_in_a_separate_backend(broker_url, nodes, tmp_path):
    import testapp

    backend = f"sqlite:///{tmp_path / 'results.db'}"
    nodes.start("--result-backend", backend)
    testapp.app.conf.update(broker_url=broker_url, result_backend=backend)
    testapp.app.close()
    try:
        result = testapp.add.delay(20, 22)
        assert result.get(timeout=10) == 42
        assert testapp.app.result_store is not testapp.app.broker
        assert testapp.app.broker.get_value(f"result:{result.id}") is None
    finally:
        testapp.app.conf.update(result_backend=None)
        testapp.app.close()
