"""Sending a task: call options become a message (checked, routed, timed, parented)."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from fleet import Fleet
from fleet.engine.request import Request, _current, current_request
from fleet.engine.sending import build_message, epoch, send
from fleet.operator_errors import ConfigError


def test_apply_async_refuses_unknown_options():
    app = Fleet("x", broker="memory://refuse")

    @app.task
    def noop():
        return None

    with pytest.raises(TypeError, match="did you mean 'countdown'"):
        noop.apply_async(countdwn=3)


@pytest.fixture
def app():
    app = Fleet("x", broker="memory://sending", timezone="Europe/Paris")
    app.task(name="x.add", priority=3, queue="maths")(lambda x, y: x + y)
    yield app
    app.close()


def test_countdown_expires_and_priority_become_message_fields(app):
    before = time.time()
    msg = build_message(app, "x.add", (1, 2), {}, {"countdown": 10, "expires": 60,
                                                    "priority": 99})
    assert before + 10 <= msg.eta <= time.time() + 10
    assert before + 60 <= msg.expires <= time.time() + 60
    assert msg.priority == 9  # clamped to the transports' range
    plain = build_message(app, "x.add", (1, 2), {}, {}, task=app.tasks["x.add"])
    assert (plain.queue, plain.priority, plain.eta) == ("maths", 3, None)


def test_a_naive_eta_is_read_in_the_apps_time_zone():
    app = Fleet("x", broker="memory://sending-tz", timezone="Europe/Paris")
    msg = build_message(app, "x.add", (), {}, {"eta": datetime(2030, 1, 1, 12, 0)})
    assert msg.eta == datetime(2030, 1, 1, 11, 0, tzinfo=UTC).timestamp()
    assert epoch(timedelta(seconds=5)) == pytest.approx(time.time() + 5, abs=1)
    app.conf.update(timezone="Mars/Olympus")
    with pytest.raises(ConfigError, match="not a known time zone"):
        epoch(datetime(2030, 1, 1), app)


def test_a_task_sent_from_a_running_task_names_it_as_parent_and_root(app):
    parent = Request(id="p1", root_id="r1")
    _current.append((app.tasks["x.add"], parent))
    try:
        child = build_message(app, "x.add", (), {}, {})
        with_options = build_message(app, "x.add", (), {}, {"queue": "q"})
    finally:
        _current.pop()
    assert (child.parent_id, child.root_id) == ("p1", "r1")
    assert (with_options.parent_id, with_options.root_id) == ("p1", "r1")
    assert current_request() is None


def test_send_puts_the_message_and_returns_its_result_handle(app):
    result = send(app, "x.add", (1, 2), {}, {"queue": "q"})
    (delivery,) = app.broker.reserve("test", ["q"], 10, 0)
    assert delivery.id == result.id and result.state == "PENDING"
