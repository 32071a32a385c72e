"""Results without nodes (memory store): what is stored, states, get(), groups."""

from __future__ import annotations

import uuid

import pytest

from fleet import Fleet
from fleet.engine import states
from fleet.engine.results import (
    AsyncResult,
    GroupResult,
    exception_from_meta,
    exception_meta,
    success_meta,
)
from fleet.exceptions import RemoteError, TimeoutError


@pytest.fixture
def app():
    app = Fleet("r", broker=f"memory://{uuid.uuid4().hex}")
    yield app
    app.close()


def test_an_unknown_id_is_pending_and_get_times_out_saying_why(app):
    result = AsyncResult("nobody", app=app)
    assert result.state == states.PENDING and not result.ready()
    with pytest.raises(TimeoutError, match=r"still PENDING after 0\.05s"):
        result.get(timeout=0.05, interval=0.01)


def test_a_stored_success_is_returned_and_a_failure_raised_as_its_own_type(app):
    app.backend.save([success_meta("ok", 4, task="r.add"),
                      exception_meta("bad", states.FAILURE, KeyError("k"), "Traceback ...")])
    assert AsyncResult("ok", app=app).get(timeout=1) == 4
    failed = AsyncResult("bad", app=app)
    with pytest.raises(KeyError) as raised:
        failed.get(timeout=1)
    assert "Remote traceback" in "".join(raised.value.__notes__)
    assert isinstance(failed.get(timeout=1, propagate=False), KeyError)
    assert failed.failed() and failed.traceback == "Traceback ..."


def test_an_exception_type_unknown_here_becomes_a_remote_error():
    meta = {"exc_type": "Boom", "exc_module": "elsewhere.errors", "exc_message": "it broke",
            "traceback": "tb"}
    exc = exception_from_meta(meta)
    assert isinstance(exc, RemoteError) and "elsewhere.errors.Boom" in str(exc)


def test_a_group_gives_its_results_in_order_and_can_be_restored(app):
    app.backend.save([success_meta("a", 1), success_meta("b", 2),
                      exception_meta("c", states.FAILURE, ValueError("no"), None)])
    group = GroupResult("g1", [AsyncResult(i, app=app) for i in "abc"], app=app).save()
    again = GroupResult.restore("g1", app)
    assert again == group and again.completed_count() == 2 and again.failed()
    with pytest.raises(ValueError, match="no"):
        again.get(timeout=1)
    values = again.get(timeout=1, propagate=False)
    assert values[:2] == [1, 2] and isinstance(values[2], ValueError)
    assert GroupResult.restore("unknown", app) is None
    group.forget()
    assert GroupResult.restore("g1", app) is None and AsyncResult("a", app=app).state == \
        states.PENDING


@pytest.mark.parametrize("exc_type", ["SystemExit", "KeyboardInterrupt", "GeneratorExit",
                                      "BaseException"])
def test_get_never_raises_what_is_not_an_exception_subclass(app, exc_type):
    # Regression (issue 13): a stored result rebuilt SystemExit or KeyboardInterrupt and
    # get() raised it, stopping the process that read the result.
    meta = {"id": "x", "state": states.FAILURE, "result": None, "exc_type": exc_type,
            "exc_module": "builtins", "exc_message": "stop", "exc_args": ["stop"],
            "traceback": "Traceback ..."}
    app.backend.save([meta])
    with pytest.raises(RemoteError, match=f"{exc_type}: stop") as raised:
        AsyncResult("x", app=app).get(timeout=1)
    assert raised.value.exc_type == exc_type and raised.value.traceback == "Traceback ..."
    assert isinstance(AsyncResult("x", app=app).result, RemoteError)


@pytest.mark.parametrize("stored", ["not json", "[1, 2]", '{"state": 5}', '{"id": "x"}',
                                    '{"state": NaN}', "[" * 5000])
def test_a_stored_result_that_is_not_a_result_is_a_broker_data_error(app, stored):
    from fleet.engine.transport.base import StoredResult
    from fleet.exceptions import BrokerDataError
    from fleet.operator_errors import EXIT_DATA

    app.result_store.set_values([StoredResult("result:x", stored)])
    with pytest.raises(BrokerDataError, match="the stored result of task x cannot be read") \
            as raised:
        AsyncResult("x", app=app).get(timeout=1)
    assert raised.value.exit_code == EXIT_DATA


def test_stored_exception_fields_of_the_wrong_type_still_give_an_exception(app):
    meta = {"id": "x", "state": states.FAILURE, "exc_type": ["KeyError"], "exc_module": 5,
            "exc_message": {"a": 1}, "exc_args": "no", "traceback": 7}
    exc = exception_from_meta(meta)
    assert isinstance(exc, Exception)
