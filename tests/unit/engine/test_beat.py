"""The beat scheduler's decisions, with a fake clock and the memory transport."""

from __future__ import annotations

import json
import tomllib
import uuid
from datetime import UTC, datetime

import pytest

from fleet import Fleet, crontab
from fleet.config_file import check_config
from fleet.engine import message as codec
from fleet.engine.beat import LAST_PREFIX, Scheduler, check_file_section, load_entries
from fleet.engine.transport.base import StoredResult
from fleet.operator_errors import ConfigError

START = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float = START):
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_app(schedule: dict, **settings) -> Fleet:
    return Fleet("t", broker=f"memory://{uuid.uuid4().hex}",
                 beat_schedule=schedule, beat_lease_seconds=3, **settings)


def sent(app) -> list[str]:
    return [codec.decode(d.body).task for d in app.broker.reserve("test", ["default"], 100)]


def test_an_interval_entry_runs_at_once_then_every_interval():
    app = make_app({"tick": {"task": "t.tick", "schedule": 10.0, "args": [1]}})
    clock = Clock()
    beat = Scheduler(app, owner="a", clock=clock)
    assert beat.tick() == pytest.approx(1.0)  # renew the lease a third of 3s later
    assert sent(app) == ["t.tick"]
    clock.now += 5
    beat.tick()
    assert sent(app) == []
    clock.now += 5
    beat.tick()
    assert sent(app) == ["t.tick"]


def test_a_standby_sends_nothing_until_the_leader_is_gone():
    app = make_app({"tick": {"task": "t.tick", "schedule": 1.0}})
    clock = Clock()
    leader, standby = Scheduler(app, "a", clock), Scheduler(app, "b", clock)
    leader.tick()
    standby.tick()
    assert leader.is_leader() and not standby.is_leader()
    assert sent(app) == ["t.tick"]
    leader.stop()  # gives the lease up: the standby takes it on its next try
    clock.now += 1
    standby.tick()
    assert standby.is_leader() and sent(app) == ["t.tick"]


def test_two_leaders_at_once_never_send_the_same_run_twice():
    app = make_app({"tick": {"task": "t.tick", "schedule": 1.0}})
    clock = Clock()
    first, second = Scheduler(app, "a", clock), Scheduler(app, "b", clock)
    first.leader_until = second.leader_until = clock.now + 100  # both believe they lead
    first.next_renew = second.next_renew = clock.now + 100
    for _ in range(3):
        first.tick()
        second.tick()
        clock.now += 1
    assert sent(app) == ["t.tick"] * 3


def test_a_restart_neither_resends_nor_skips_a_missed_run():
    app = make_app({"hourly": {"task": "t.hourly", "schedule": 3600.0}})
    clock = Clock()
    Scheduler(app, "a", clock).tick()
    assert sent(app) == ["t.hourly"]
    app.broker.release_lease("beat", "a")
    clock.now += 60
    Scheduler(app, "b", clock).tick()  # restarted a minute later: not due again
    assert sent(app) == []
    app.broker.release_lease("beat", "b")
    clock.now += 3 * 3600  # down for three runs: sent once, not three times
    restarted = Scheduler(app, "c", clock)
    restarted.tick()
    restarted.tick()
    assert sent(app) == ["t.hourly"]
    record = json.loads(app.broker.get_value(LAST_PREFIX + "hourly"))
    assert record["at"] == clock.now and record["ran"] is True


def test_a_new_crontab_entry_waits_for_its_next_time():
    app = make_app({"cron": {"task": "t.cron", "schedule": crontab(minute="*/5")}})
    clock = Clock(START + 60)  # 12:01
    beat = Scheduler(app, "a", clock)
    assert beat.tick() <= 1.0
    assert sent(app) == []
    row = beat.describe()[0]
    assert row["next_run"] == "2026-03-01T12:05:00+00:00" and row["last_run"] is None
    clock.now = START + 5 * 60
    beat.tick()
    assert sent(app) == ["t.cron"]


def test_entry_options_route_the_task():
    app = make_app({"q": {"task": "t.q", "schedule": 5, "kwargs": {"x": 1},
                          "options": {"queue": "periodic"}}})
    Scheduler(app, "a", Clock()).tick()
    (delivery,) = app.broker.reserve("test", ["periodic"], 10)
    msg = codec.decode(delivery.body)
    assert msg.task == "t.q" and msg.kwargs == {"x": 1}


@pytest.mark.parametrize(("entry", "message"), [
    ({"task": "t.x", "schedul": 5}, "unknown key 'schedul'.*did you mean 'schedule'"),
    ({"schedule": 5}, "has no 'task'"),
    ({"task": "t.x", "schedule": "often"}, r"beat_schedule\['bad'\]"),
    ({"task": "t.x", "schedule": {"crontab": {"minute": "61"}}}, "minute"),
    ({"task": "t.x", "schedule": 5, "options": {"queu": "a"}}, "did you mean 'queue'"),
    # regression: args that cannot travel as JSON failed at every run, not at start
    ({"task": "t.x", "schedule": 5, "args": [{1, 2}]}, r"beat_schedule\['bad'\]: 'args'.*set"),
])
def test_a_wrong_entry_is_an_error_naming_it(entry, message):
    with pytest.raises(ConfigError, match=message):
        load_entries(make_app({"bad": entry}))


def test_fleet_toml_beat_section_is_checked(tmp_path):
    text = ('[beat.schedule.tick]\ntask = "t.x"\nschedule = { every = 5 }\n'
            '[beat.schedule.bad]\ntask = "t.x"\nschedule = { crontab = { hour = "25" } }\n'
            '[beat.schedul.x]\ntask = "t.x"\n')
    config, _ = check_config(tomllib.loads(text), tmp_path / "fleet.toml")
    assert config.engine_settings()["beat_schedule"]["tick"]["schedule"] == {"every": 5}
    problems = [str(p.message) for p in check_file_section(config)]
    assert len(problems) == 2
    assert "unknown key beat.schedul" in problems[0] and "hour" in problems[1]


def test_a_record_from_an_older_beat_is_read():
    app = make_app({"tick": {"task": "t.tick", "schedule": 60}})
    app.broker.set_values([StoredResult(LAST_PREFIX + "tick",
                                        json.dumps({"at": START - 30, "ran": True}))])
    beat = Scheduler(app, "a", Clock())
    beat.tick()
    assert sent(app) == []
    assert beat.describe()[0]["next_run"] == "2026-03-01T12:00:30+00:00"


def test_schedules_may_be_seconds_timedeltas_crontabs_or_toml_tables():
    from datetime import timedelta

    app = make_app({"a": {"task": "t.a", "schedule": timedelta(minutes=2)},
                    "b": {"task": "t.b", "schedule": 30},
                    "c": {"task": "t.c", "schedule": {"crontab": {"minute": "*/2,1",
                                                                  "day_of_week": "mon-fri"}}},
                    "d": {"task": "t.d", "schedule": {"every": 5}}}, timezone="Europe/Berlin")
    described = {e.name: e.schedule.describe() for e in load_entries(app)}
    assert described == {"a": "every 2m", "b": "every 30s", "d": "every 5s",
                         "c": "crontab(*/2,1 * * * mon-fri) Europe/Berlin"}


def test_a_run_claimed_by_a_beat_that_died_before_recording_it_does_not_stall_the_entry():
    app = make_app({"tick": {"task": "t.tick", "schedule": 10.0}})
    clock = Clock()
    Scheduler(app, "a", clock).tick()
    assert sent(app) == ["t.tick"]
    record = json.loads(app.broker.get_value(LAST_PREFIX + "tick"))
    clock.now += 10  # "a" claims the next run, then dies before sending or recording it
    claim = json.dumps({"owner": "a", "at": clock.now})
    assert app.broker.add_value(f"beat:claim:tick:{record['at']:.6f}", claim)
    app.broker.release_lease("beat", "a")
    clock.now += 5
    successor = Scheduler(app, "b", clock)
    successor.tick()
    assert sent(app) == []  # the claimed run is not sent again...
    clock.now += 5
    successor.next_renew = 0
    successor.tick()
    assert sent(app) == ["t.tick"]  # ...and the entry goes on from the claim's time


@pytest.mark.parametrize("garbage", ["not json", "[1, 2]", '{"ran": true}', '{"at": "x"}',
                                     '{"at": NaN}', '{"at": 1e400}', "[" * 5000])
def test_a_corrupt_last_run_record_is_replaced_and_never_stops_the_beat(garbage, caplog):
    """A value anyone with broker access wrote used to crash the beat (and a -B node)."""
    app = make_app({"tick": {"task": "t.tick", "schedule": 10.0}})
    app.broker.set_values([StoredResult(LAST_PREFIX + "tick", garbage)])
    clock = Clock()
    beat = Scheduler(app, owner="a", clock=clock)
    beat.tick()
    assert sent(app) == []  # counted as first seen now: due one interval later
    assert "beat:last:tick" in caplog.text and "corrupt" in caplog.text
    assert json.loads(app.broker.get_value(LAST_PREFIX + "tick"))["at"] == START
    clock.now += 10
    beat.tick()
    assert sent(app) == ["t.tick"]
    assert beat.describe()[0]["last_run"] is not None


def test_a_garbage_claim_counts_its_run_as_done_instead_of_crashing():
    app = make_app({"tick": {"task": "t.tick", "schedule": 10.0}})
    app.broker.add_value("beat:claim:tick:first", "garbage", 60)
    beat = Scheduler(app, owner="a", clock=Clock())
    beat.tick()
    assert beat.last_run("tick")["ran"] is True
