"""Events as a client sees them: decoding, one line per event, listening through errors."""

from __future__ import annotations

import pytest

from fleet.engine.events import decode, format_event


def test_dump_lines_show_time_node_event_task_and_outcome():
    event = {"type": "task-succeeded", "node": "w1@h", "timestamp": 1_700_000_000.25,
             "uuid": "abc", "name": "proj.add", "result": "4", "runtime": 0.0123}
    line = format_event(event)
    assert " w1@h task-succeeded proj.add[abc] result=\"4\" runtime=0.012300s" in line
    assert ".250 " in line
    assert decode('[{"type": "worker-online"}, 5]') == [{"type": "worker-online"}]
    assert decode("not json") == []


def test_events_keep_coming_after_a_broker_error_when_the_caller_takes_notices(monkeypatch):
    # Regression: `fleet events --dump` died on a broker restart instead of reconnecting.
    import uuid

    from fleet import Fleet
    from fleet.engine import events
    from fleet.exceptions import BrokerUnavailable

    app = Fleet("t", broker=f"memory://{uuid.uuid4().hex}")
    real_wait, failures = events._wait, [1]

    def flaky_wait(subscription, interval):
        if failures[0]:
            failures[0] -= 1
            raise BrokerUnavailable("injected: the broker restarts")
        return real_wait(subscription, interval)

    monkeypatch.setattr(events, "_wait", flaky_wait)
    monkeypatch.setattr(events, "RESUBSCRIBE_DELAY", 0.0)
    notices: list[str] = []
    stream = events.listen(app, interval=0.01, notice=notices.append)
    assert next(stream) is None
    assert next(stream) is None  # the error: noticed, subscribed again
    assert "broker error (BrokerUnavailable" in notices[0] and "listening again" in notices[1]
    app.broker.publish(events.EVENTS_CHANNEL, '[{"type": "worker-heartbeat", "node": "w"}]')
    got = next(item for item in stream if item is not None)
    assert got["type"] == "worker-heartbeat"
    stream.close()
    plain = events.listen(app, interval=0.01)
    assert next(plain) is None
    failures[0] = 1
    with pytest.raises(BrokerUnavailable):  # without notices, the error is the caller's
        next(plain)
    app.close()
