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
