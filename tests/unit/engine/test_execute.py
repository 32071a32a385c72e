"""Running one task in this process (what a pool child does), without processes."""

from __future__ import annotations

import pytest

from fleet.engine import message as codec
from fleet.engine import states
from fleet.engine.execute import Outcome, add_follow_ups, execute
from fleet.engine.results import success_meta
from fleet.engine.sending import build_message
from tests.unit.engine.support import make_app, sent, tasks


@pytest.fixture
def app():
    app = make_app()
    yield app
    app.close()


def test_a_follow_up_that_cannot_be_built_fails_the_task_with_a_clear_error(app):
    # Regression: the error was only logged; the task looked successful and its chain hung.
    add, mul, _ = tasks(app)
    (add.s(1, 1) | mul.s(8)).delay()
    (first,) = sent(app)
    first.callbacks["chain"] = [{"kind": "bogus"}]
    done = Outcome(first.id, states.SUCCESS, 0.1, "2", codec.dumps(success_meta(first.id, 2)))
    failed = add_follow_ups(app, first, done)
    assert failed.state == states.FAILURE and failed.send == []
    meta = codec.loads(failed.meta)
    assert "what follows it in its workflow could not be sent" in meta["exc_message"]
    assert "unknown signature kind 'bogus'" in meta["exc_message"]
    assert failed.header()["follow_up"]["meta"] == failed.meta  # the node follows it up


def _run(app, name, *args, **options):
    msg = build_message(app, name, args, {}, options)
    return execute(app, msg, "w1@h", {"queue": "default"})


def test_a_task_that_returns_succeeds_with_its_value_stored(app):
    outcome = _run(app, "t.add", 2, 2)
    assert outcome.state == states.SUCCESS and outcome.summary == "4"
    meta = codec.loads(outcome.meta)
    assert meta["result"] == 4 and meta["node"] == "w1@h" and meta["task"] == "t.add"
    assert set(outcome.header()) == {"id", "state", "runtime", "summary"}


def test_a_task_that_raises_fails_with_a_traceback_from_its_own_code(app):
    outcome = _run(app, "t.add", 1, "x")
    meta = codec.loads(outcome.meta)
    assert outcome.state == states.FAILURE and meta["exc_type"] == "TypeError"
    assert outcome.summary.startswith("TypeError: unsupported operand")
    assert "fleet/engine/execute.py" not in meta["traceback"]


def test_a_value_json_cannot_carry_fails_the_task_saying_what_to_return(app):
    @app.task(name="t.obj")
    def obj():
        return object()

    outcome = _run(app, "t.obj")
    assert outcome.state == states.FAILURE and "cannot be encoded as JSON" in outcome.summary


def test_autoretry_for_retries_with_a_countdown_until_max_retries(app):
    calls = []

    @app.task(name="t.flaky", autoretry_for=(ValueError,), max_retries=1,
              default_retry_delay=30)
    def flaky():
        calls.append(1)
        raise ValueError("not yet")

    outcome = _run(app, "t.flaky")
    assert outcome.state == states.RETRY and outcome.retry["eta"] > 0
    assert outcome.summary.startswith("retry in 30.0s: ValueError: not yet")
    assert _run(app, "t.flaky", retries=1).state == states.FAILURE


def test_a_task_with_callbacks_gets_its_follow_up_messages_in_the_outcome(app):
    add, mul, _ = tasks(app)
    (add.s(1, 1) | mul.s(8)).delay()
    (first,) = sent(app)
    outcome = execute(app, first, "w1@h", {})
    (follow,) = outcome.send
    assert codec.decode(follow["body"]).args == [2, 8] and follow["queue"] == "default"
