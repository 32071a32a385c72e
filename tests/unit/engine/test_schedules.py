"""Schedules: crontab parsing, next_run over calendars and DST, intervals, normalisation."""

from __future__ import annotations

import dataclasses
import itertools
import json
import time
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from fleet.engine.schedules import Schedule, crontab, from_dict, interval, to_schedule
from fleet.operator_errors import ConfigError

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def runs(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    """The next `count` runs after `after`, each computed from the previous one."""
    result = []
    for _ in range(count):
        after = schedule.next_run(after)
        result.append(after)
    return result


def values(schedule: crontab, field: str) -> set[int]:
    """The parsed values of one field (a private attribute: parsing is what is under test)."""
    return set(getattr(schedule, {"minute": "_minutes", "hour": "_hours",
                                  "day_of_week": "_days_of_week",
                                  "day_of_month": "_days_of_month",
                                  "month_of_year": "_months"}[field]))


# -- parsing ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "spec", "expected"),
    [
        ("minute", "*", set(range(60))),
        ("minute", "*/15", {0, 15, 30, 45}),
        ("minute", 5, {5}),
        ("minute", "5", {5}),
        ("minute", [1, 5, 9], {1, 5, 9}),
        ("minute", (9, 1), {1, 9}),
        ("minute", range(0, 60, 20), {0, 20, 40}),
        ("minute", "1,5,9", {1, 5, 9}),
        ("minute", " 1 , 5 ", {1, 5}),
        ("minute", "10-14", {10, 11, 12, 13, 14}),
        ("minute", "10-20/5", {10, 15, 20}),
        ("minute", "*/20,1", {0, 20, 40, 1}),
        ("minute", "1-5,10-15/2", {1, 2, 3, 4, 5, 10, 12, 14}),
        ("minute", "50/5", {50, 55}),
        ("minute", "58-1", {58, 59, 0, 1}),
        ("hour", "*/6", {0, 6, 12, 18}),
        ("hour", "22-2", {22, 23, 0, 1, 2}),
        ("hour", "9-17/4", {9, 13, 17}),
        ("hour", 0, {0}),
        ("day_of_month", "*/10", {1, 11, 21, 31}),
        ("day_of_month", "1,15,31", {1, 15, 31}),
        ("day_of_month", "28-3", {28, 29, 30, 31, 1, 2, 3}),
        ("month_of_year", "*/3", {1, 4, 7, 10}),
        ("month_of_year", "jan", {1}),
        ("month_of_year", "DEC", {12}),
        ("month_of_year", "February", {2}),
        ("month_of_year", "jun-aug", {6, 7, 8}),
        ("month_of_year", "nov-feb", {11, 12, 1, 2}),
        ("month_of_year", "jan,jul", {1, 7}),
        ("day_of_week", "*", {0, 1, 2, 3, 4, 5, 6}),
        ("day_of_week", "sun", {0}),
        ("day_of_week", 0, {0}),
        ("day_of_week", 7, {0}),
        ("day_of_week", "7", {0}),
        ("day_of_week", "Mon", {1}),
        ("day_of_week", "monday", {1}),
        ("day_of_week", "SATURDAY", {6}),
        ("day_of_week", "mon-fri", {1, 2, 3, 4, 5}),
        ("day_of_week", "1-7", {0, 1, 2, 3, 4, 5, 6}),
        ("day_of_week", "5-7", {5, 6, 0}),
        ("day_of_week", "fri-mon", {5, 6, 0, 1}),
        ("day_of_week", "sat,sun", {6, 0}),
        ("day_of_week", "*/2", {0, 2, 4, 6}),
        ("day_of_week", "mon-fri/2", {1, 3, 5}),
        ("day_of_week", ["mon", "wed"], {1, 3}),
        ("day_of_week", {3, 1}, {1, 3}),
    ],
)
def test_every_field_form_parses_to_the_expected_values(field, spec, expected):
    assert values(crontab(**{field: spec}), field) == expected


def test_fields_are_rewritten_as_canonical_cron_text():
    schedule = crontab(minute=[30, 0], hour=" 9 - 17 ", day_of_week="MON-Fri", month_of_year=3)
    assert (schedule.minute, schedule.hour, schedule.day_of_week) == ("0,30", "9-17", "mon-fri")
    assert schedule.month_of_year == "3"


def test_equal_when_they_fire_at_the_same_times():
    assert crontab(minute="*/30") == crontab(minute=[0, 30])
    assert crontab(day_of_week="sun") == crontab(day_of_week=7)
    assert crontab(tz="UTC") == crontab(tz=ZoneInfo("UTC"))
    assert crontab(tz="UTC") != crontab()  # None means "the caller's zone", not UTC
    assert len({crontab(minute=0), crontab(minute="0")}) == 1


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"hour": "25"}, ["crontab hour='25'", "25 is out of range 0-23"]),
        ({"hour": 24}, ["crontab hour=24", "out of range 0-23"]),
        ({"minute": 60}, ["crontab minute=60", "out of range 0-59"]),
        ({"minute": -1}, ["crontab minute=-1", "out of range 0-59"]),
        ({"minute": [1, 99]}, ["crontab minute=[1, 99]", "99 is out of range 0-59"]),
        ({"minute": "*/0"}, ["crontab minute='*/0'", "step 0 must be at least 1"]),
        ({"minute": "*/x"}, ["crontab minute='*/x'", "step 'x' is not a whole number"]),
        ({"minute": "1,,2"}, ["crontab minute='1,,2'", "empty item"]),
        ({"minute": ""}, ["crontab minute=''", "empty item"]),
        ({"minute": "-5"}, ["crontab minute='-5'", "is not a range"]),
        ({"minute": "abc"}, ["crontab minute='abc'", "'abc' is not a number in range 0-59"]),
        ({"minute": 1.5}, ["crontab minute=1.5", "expected an int"]),
        ({"minute": True}, ["crontab minute=True", "expected an int"]),
        ({"minute": []}, ["crontab minute=[]", "expected an int"]),
        ({"minute": [1, None]}, ["crontab minute=[1, None]", "None is not an int"]),
        ({"day_of_month": 0}, ["crontab day_of_month=0", "out of range 1-31"]),
        ({"day_of_month": "32"}, ["crontab day_of_month='32'", "out of range 1-31"]),
        ({"month_of_year": 13}, ["crontab month_of_year=13", "out of range 1-12"]),
        ({"month_of_year": "jna"}, ["crontab month_of_year='jna'", "not a month name"]),
        ({"day_of_week": 8}, ["crontab day_of_week=8", "out of range 0-7"]),
        ({"day_of_week": "mun-fri"}, ["crontab day_of_week='mun-fri'", "'mun' is not a day"]),
        ({"day_of_week": "mon-"}, ["crontab day_of_week='mon-'", "is not a range"]),
    ],
)
def test_invalid_fields_name_the_field_the_value_and_what_is_valid(kwargs, fragments):
    with pytest.raises(ConfigError) as caught:
        crontab(**kwargs)
    for fragment in fragments:
        assert fragment in caught.value.message


def test_a_misspelt_day_name_gets_a_did_you_mean():
    with pytest.raises(ConfigError) as caught:
        crontab(day_of_week="tuesdy")
    assert caught.value.hint == "did you mean 'tuesday'?"


def test_an_unknown_time_zone_is_a_config_error_with_a_suggestion():
    with pytest.raises(ConfigError) as caught:
        crontab(tz="Europe/Berln")
    assert "crontab tz='Europe/Berln': unknown time zone" in caught.value.message
    assert caught.value.hint == "did you mean 'Europe/Berlin'?"
    with pytest.raises(ConfigError, match="crontab tz=5: expected an IANA zone name"):
        crontab(tz=5)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("day_of_month", "month_of_year"),
    [(31, 2), (30, "feb"), ("30,31", 2), (31, "apr,jun,sep,nov")],
)
def test_a_crontab_that_can_never_fire_is_refused_at_construction(day_of_month, month_of_year):
    with pytest.raises(ConfigError) as caught:
        crontab(day_of_month=day_of_month, month_of_year=month_of_year)
    assert "never fires" in caught.value.message
    assert "day_of_month=" in caught.value.message


def test_an_impossible_day_is_fine_when_a_weekday_can_fire_instead():
    # Both restricted: cron ORs them, so this runs on the Mondays of February.
    schedule = crontab(minute=0, hour=0, day_of_month=31, month_of_year=2, day_of_week="mon")
    assert schedule.next_run(utc(2025, 1, 1)) == utc(2025, 2, 3)


# -- next_run: calendar ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        (crontab(), utc(2024, 5, 1, 10, 0), utc(2024, 5, 1, 10, 1)),
        (crontab(), utc(2024, 5, 1, 10, 0, 59, 999999), utc(2024, 5, 1, 10, 1)),
        (crontab(minute="*/15"), utc(2024, 5, 1, 10, 0), utc(2024, 5, 1, 10, 15)),
        (crontab(minute="*/15"), utc(2024, 5, 1, 10, 14, 59), utc(2024, 5, 1, 10, 15)),
        (crontab(minute="*/15"), utc(2024, 5, 1, 23, 50), utc(2024, 5, 2, 0, 0)),
        (crontab(minute=0, hour=0), utc(2024, 1, 31, 0, 0), utc(2024, 2, 1)),
        (crontab(minute=0, hour=0), utc(2023, 12, 31, 12), utc(2024, 1, 1)),
        (crontab(minute=59, hour=23), utc(2024, 4, 30, 23, 59), utc(2024, 5, 1, 23, 59)),
        (crontab(minute=0, hour=0, day_of_month=31), utc(2024, 1, 31, 1), utc(2024, 3, 31)),
        (crontab(minute=0, hour=0, day_of_month=31), utc(2024, 4, 1), utc(2024, 5, 31)),
        (crontab(minute=0, hour=0, day_of_month=1, month_of_year=1),
         utc(2024, 1, 1), utc(2025, 1, 1)),
        (crontab(minute=30, hour=9, month_of_year="dec"),
         utc(2024, 12, 31, 10), utc(2025, 12, 1, 9, 30)),
        (crontab(minute=0, hour=12, day_of_month=30), utc(2024, 1, 30, 13), utc(2024, 3, 30, 12)),
        (crontab(minute=0, hour=0, day_of_month=29, month_of_year=2),
         utc(2024, 3, 1), utc(2028, 2, 29)),
        (crontab(minute=0, hour=0, day_of_month=29, month_of_year=2),
         utc(2023, 1, 1), utc(2024, 2, 29)),
        (crontab(minute=0, hour=0, day_of_month=29, month_of_year=2),  # 2100 is not leap
         utc(2096, 3, 1), utc(2104, 2, 29)),
        (crontab(minute=0, hour=0, day_of_month=29), utc(2023, 1, 29, 1), utc(2023, 3, 29)),
    ],
)
def test_next_run_crosses_month_ends_years_and_leap_days(schedule, after, expected):
    assert schedule.next_run(after) == expected


@pytest.mark.parametrize(
    ("day_of_week", "after", "expected"),
    [
        ("mon", utc(2024, 9, 1), utc(2024, 9, 2, 8)),  # 2024-09-01 is a Sunday
        ("sun", utc(2024, 9, 1, 8), utc(2024, 9, 8, 8)),
        (7, utc(2024, 9, 1, 8), utc(2024, 9, 8, 8)),
        (0, utc(2024, 9, 1, 7), utc(2024, 9, 1, 8)),
        ("mon-fri", utc(2024, 9, 6, 9), utc(2024, 9, 9, 8)),
        ("sat,sun", utc(2024, 9, 2), utc(2024, 9, 7, 8)),
        ("fri-mon", utc(2024, 9, 3), utc(2024, 9, 6, 8)),
        ("tue", utc(2024, 12, 30, 9), utc(2024, 12, 31, 8)),
        ("wed", utc(2024, 12, 31, 9), utc(2025, 1, 1, 8)),
    ],
)
def test_next_run_on_days_of_the_week(day_of_week, after, expected):
    schedule = crontab(minute=0, hour=8, day_of_week=day_of_week)
    assert schedule.next_run(after) == expected


def test_day_of_month_or_day_of_week_when_both_are_restricted():
    """Like cron: every 13th AND every Friday, not only Friday the 13th."""
    schedule = crontab(minute=0, hour=0, day_of_month=13, day_of_week="fri")
    days = [run.date().isoformat() for run in runs(schedule, utc(2024, 9, 1), 9)]
    assert days == [
        "2024-09-06", "2024-09-13", "2024-09-20", "2024-09-27",  # Fridays (13th is one)
        "2024-10-04", "2024-10-11", "2024-10-13", "2024-10-18", "2024-10-25",  # 13th: Sunday
    ]


def test_only_day_of_week_counts_when_day_of_month_is_star():
    schedule = crontab(minute=0, hour=0, day_of_week="fri")
    assert all(run.weekday() == 4 for run in runs(schedule, utc(2024, 9, 1), 10))


def test_only_day_of_month_counts_when_day_of_week_covers_every_day():
    # '0-6' and '*/1' are the whole week: unrestricted, so no OR with the 13th.
    for every_day in ("*", "0-6", "*/1", "mon-sun"):
        schedule = crontab(minute=0, hour=0, day_of_month=13, day_of_week=every_day)
        assert runs(schedule, utc(2024, 9, 1), 2) == [utc(2024, 9, 13), utc(2024, 10, 13)]


def test_next_run_skips_whole_months_instead_of_scanning_minutes():
    # A century of leap days: minute-by-minute this would be ~50 million steps.
    schedule = crontab(minute=0, hour=0, day_of_month=29, month_of_year=2)
    started = time.perf_counter()
    assert runs(schedule, utc(2001, 1, 1), 25)[-1] == utc(2104, 2, 29)
    assert time.perf_counter() - started < 0.5  # ~1 ms in practice; generous for slow CI


def brute_force_next(schedule: crontab, after: datetime, zone: ZoneInfo) -> datetime:
    """Reference: walk real minutes, match the local wall clock (the hour-`*` rule)."""
    assert schedule.hour == "*" and schedule.day_of_month == "*" and schedule.month_of_year == "*"
    minutes, days = values(schedule, "minute"), values(schedule, "day_of_week")
    moment = after.replace(second=0, microsecond=0) + timedelta(minutes=1)
    while True:
        local = moment.astimezone(zone)
        if local.minute in minutes and local.isoweekday() % 7 in days:
            return moment
        moment += timedelta(minutes=1)


@pytest.mark.parametrize(
    ("schedule", "after"),
    [
        (crontab(minute="*/7", tz=BERLIN), utc(2024, 3, 31, 0, 40)),
        (crontab(minute="*/7", tz=BERLIN), utc(2024, 10, 27, 0, 50)),
        (crontab(minute="5,50", tz=NEW_YORK), utc(2024, 3, 10, 6)),
        (crontab(minute="5,50", tz=NEW_YORK), utc(2024, 11, 3, 4, 30)),
        (crontab(minute=30, day_of_week="sun", tz=NEW_YORK), utc(2024, 11, 2, 12)),
        (crontab(minute=0, tz=ZoneInfo("Australia/Lord_Howe")), utc(2024, 4, 6, 13)),
        (crontab(minute=0, tz=ZoneInfo("Australia/Lord_Howe")), utc(2024, 10, 5, 14)),
    ],
)
def test_hourly_schedules_match_a_minute_by_minute_walk_through_dst(schedule, after):
    zone = schedule._zone
    for _ in range(12):
        expected = brute_force_next(schedule, after, zone)
        assert schedule.next_run(after) == expected
        after = expected


# -- next_run: time zones and DST ------------------------------------------------------------


def test_next_run_is_computed_on_the_schedules_wall_clock_and_returned_in_utc():
    schedule = crontab(minute=0, hour=9, tz="Europe/Berlin")
    run = schedule.next_run(utc(2024, 7, 1, 12))
    assert run == utc(2024, 7, 2, 7)  # 09:00 CEST
    assert run.tzinfo is UTC


def test_the_after_argument_may_be_in_any_zone():
    schedule = crontab(minute=0, hour=9, tz="Europe/Berlin")
    after = datetime(2024, 7, 1, 8, 0, tzinfo=NEW_YORK)  # 12:00 UTC
    assert schedule.next_run(after) == utc(2024, 7, 2, 7)


def test_a_crontab_without_a_zone_runs_in_utc():
    assert crontab(minute=0, hour=9).next_run(utc(2024, 7, 1, 12)) == utc(2024, 7, 2, 9)


@pytest.mark.parametrize("method", ["next_run", "is_due"])
def test_naive_datetimes_are_refused(method):
    naive = datetime(2024, 7, 1, 12)
    for schedule in (crontab(), interval(30)):
        with pytest.raises(ValueError, match="naive"):
            if method == "next_run":
                schedule.next_run(naive)
            else:
                schedule.is_due(None, naive)


@pytest.mark.parametrize(
    ("zone", "after", "expected"),
    [
        # Berlin jumps 02:00 CET -> 03:00 CEST at 01:00 UTC on 2024-03-31.
        ("Europe/Berlin", utc(2024, 3, 30, 12), [utc(2024, 3, 31, 1), utc(2024, 4, 1, 0, 30)]),
        # New York jumps 02:00 EST -> 03:00 EDT at 07:00 UTC on 2024-03-10.
        ("America/New_York", utc(2024, 3, 9, 12), [utc(2024, 3, 10, 7), utc(2024, 3, 11, 6, 30)]),
    ],
)
def test_a_time_skipped_by_spring_forward_runs_once_right_after_the_gap(zone, after, expected):
    schedule = crontab(minute=30, hour=2, tz=zone)
    assert runs(schedule, after, 2) == expected


def test_times_in_and_after_the_gap_collapse_into_one_run():
    schedule = crontab(minute="0,30", hour="2,3", tz="Europe/Berlin")
    assert runs(schedule, utc(2024, 3, 30, 23), 3) == [
        utc(2024, 3, 31, 1, 0),  # 02:00, 02:30 and 03:00 CEST all run once, at 03:00 CEST
        utc(2024, 3, 31, 1, 30),  # 03:30 CEST
        utc(2024, 4, 1, 0, 0),  # 02:00 CEST next day
    ]


@pytest.mark.parametrize(
    ("zone", "hour", "after", "expected"),
    [
        # Berlin: 03:00 CEST -> 02:00 CET at 01:00 UTC on 2024-10-27; 02:30 happens twice.
        ("Europe/Berlin", 2, utc(2024, 10, 26, 12),
         [utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30)]),
        # New York: 02:00 EDT -> 01:00 EST at 06:00 UTC on 2024-11-03; 01:30 happens twice.
        ("America/New_York", 1, utc(2024, 11, 2, 12),
         [utc(2024, 11, 3, 5, 30), utc(2024, 11, 4, 6, 30)]),
    ],
)
def test_a_time_repeated_by_fall_back_runs_once_the_first_time(zone, hour, after, expected):
    schedule = crontab(minute=30, hour=hour, tz=zone)
    assert runs(schedule, after, 2) == expected


def test_a_fixed_time_is_not_rerun_when_asked_during_the_second_pass():
    schedule = crontab(minute=30, hour=1, tz="America/New_York")
    during_second_pass = utc(2024, 11, 3, 6, 10)  # 01:10 EST, after 01:30 EDT already ran
    assert schedule.next_run(during_second_pass) == utc(2024, 11, 4, 6, 30)


@pytest.mark.parametrize(
    ("zone", "start", "end"),
    [
        ("Europe/Berlin", utc(2024, 3, 30, 22), utc(2024, 3, 31, 4)),
        ("Europe/Berlin", utc(2024, 10, 26, 22), utc(2024, 10, 27, 4)),
        ("America/New_York", utc(2024, 3, 10, 4), utc(2024, 3, 10, 10)),
        ("America/New_York", utc(2024, 11, 3, 3), utc(2024, 11, 3, 9)),
    ],
)
def test_every_15_minutes_keeps_firing_every_15_real_minutes_through_dst(zone, start, end):
    schedule = crontab(minute="*/15", tz=zone)
    fired = runs(schedule, start, int((end - start) / timedelta(minutes=15)))
    assert fired[0] == start + timedelta(minutes=15)
    assert fired[-1] == end
    gaps = {b - a for a, b in itertools.pairwise(fired)}
    assert gaps == {timedelta(minutes=15)}  # no duplicate, no hole


def test_hourly_runs_in_both_passes_of_the_repeated_hour():
    schedule = crontab(minute=30, tz="America/New_York")
    assert runs(schedule, utc(2024, 11, 3, 4, 45), 3) == [
        utc(2024, 11, 3, 5, 30),  # 01:30 EDT
        utc(2024, 11, 3, 6, 30),  # 01:30 EST: a different real hour
        utc(2024, 11, 3, 7, 30),  # 02:30 EST
    ]


def test_hourly_skips_the_hour_that_does_not_exist():
    schedule = crontab(minute=30, tz="America/New_York")
    assert runs(schedule, utc(2024, 3, 10, 6), 2) == [
        utc(2024, 3, 10, 6, 30),  # 01:30 EST
        utc(2024, 3, 10, 7, 30),  # 03:30 EDT: 60 real minutes later
    ]


def test_with_default_tz_fills_in_only_a_missing_zone():
    assert crontab().with_default_tz("Europe/Berlin").tz == "Europe/Berlin"
    assert crontab(tz="UTC").with_default_tz("Europe/Berlin").tz == "UTC"
    assert crontab().with_default_tz(None).tz is None


# -- interval ---------------------------------------------------------------------------------


@pytest.mark.parametrize("every", [30, 30.0, timedelta(seconds=30)])
def test_an_interval_takes_seconds_or_a_timedelta(every):
    assert interval(every) == interval(30)
    assert interval(every).seconds == 30.0


def test_an_interval_counts_real_time_across_dst():
    after = datetime(2024, 3, 31, 1, 30, tzinfo=BERLIN)  # 00:30 UTC, 30 min before the jump
    assert interval(timedelta(hours=1)).next_run(after) == utc(2024, 3, 31, 1, 30)


@pytest.mark.parametrize(
    ("every", "fragment"),
    [
        (0, "must be more than 0 seconds"),
        (-5, "must be more than 0 seconds"),
        (timedelta(0), "must be more than 0 seconds"),
        (float("nan"), "must be more than 0 seconds"),
        (float("inf"), "must be more than 0 seconds"),
        ("30", "expected a number of seconds or a timedelta"),
        (True, "expected a number of seconds or a timedelta"),
        (None, "expected a number of seconds or a timedelta"),
    ],
)
def test_invalid_intervals_are_config_errors(every, fragment):
    with pytest.raises(ConfigError, match=fragment):
        interval(every)


@pytest.mark.parametrize(
    ("every", "text"),
    [(30, "every 30s"), (0.5, "every 0.5s"), (90, "every 1m30s"), (300, "every 5m"),
     (3600, "every 1h"), (5400, "every 1h30m"), (86400, "every 1d"), (90061, "every 1d1h1m1s"),
     (60.5, "every 1m0.5s")],
)
def test_interval_describe(every, text):
    assert interval(every).describe() == text


# -- describe, round trip, normalisation --------------------------------------------------------


def test_crontab_describe_is_in_cron_order_with_the_zone():
    assert crontab(minute="*/15", tz="Europe/Berlin").describe() == (
        "crontab(*/15 * * * *) Europe/Berlin"
    )
    schedule = crontab(minute=0, hour=9, day_of_week="mon-fri", day_of_month=1, month_of_year=3)
    assert schedule.describe() == "crontab(0 9 1 3 mon-fri) UTC"


@pytest.mark.parametrize(
    "schedule",
    [
        interval(30),
        interval(0.25),
        crontab(),
        crontab(minute="*/15", hour="9-17", day_of_week="mon-fri", tz="Europe/Berlin"),
        crontab(minute=[0, 30], day_of_month="1,15", month_of_year="jan-mar", tz=NEW_YORK),
        crontab(hour=3, tz=UTC),
    ],
)
def test_to_dict_and_from_dict_round_trip_through_json(schedule):
    data = json.loads(json.dumps(schedule.to_dict()))
    assert from_dict(data) == schedule
    assert type(schedule).from_dict(data) == schedule
    assert from_dict(data).describe() == schedule.describe()


def test_class_from_dict_refuses_the_other_kind():
    with pytest.raises(ConfigError, match="is not an interval"):
        interval.from_dict({"crontab": {}})
    with pytest.raises(ConfigError, match="is not a crontab"):
        crontab.from_dict({"every": 3})


def test_a_zone_without_a_name_works_but_cannot_be_written_out():
    schedule = crontab(minute=0, hour=9, tz=timezone(timedelta(hours=5)))
    assert schedule.next_run(utc(2024, 7, 1, 12)) == utc(2024, 7, 2, 4)
    assert schedule.describe() == "crontab(0 9 * * *) UTC+05:00"
    with pytest.raises(ConfigError, match="has no IANA name"):
        schedule.to_dict()


def test_schedules_are_frozen_values():
    with pytest.raises(dataclasses.FrozenInstanceError):
        crontab().minute = "5"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        interval(5).seconds = 6  # type: ignore[misc]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (30, interval(30)),
        (2.5, interval(2.5)),
        (timedelta(minutes=5), interval(300)),
        (interval(7), interval(7)),
        (crontab(minute=5), crontab(minute=5)),
        ({"every": 30}, interval(30)),
        ({"crontab": {"minute": "*/15", "tz": "Europe/Berlin"}},
         crontab(minute="*/15", tz="Europe/Berlin")),
        ({"crontab": {}}, crontab()),
        ({"crontab": {"minute": [0, 30], "day_of_week": "mon-fri"}},
         crontab(minute="0,30", day_of_week="1-5")),
    ],
)
def test_to_schedule_normalises_beat_schedule_values(value, expected):
    assert to_schedule(value) == expected


def test_to_schedule_gives_a_zoneless_crontab_the_default_zone():
    assert to_schedule({"crontab": {"hour": 3}}, default_tz="Europe/Berlin").tz == "Europe/Berlin"
    assert to_schedule(crontab(tz="UTC"), default_tz="Europe/Berlin").tz == "UTC"
    assert to_schedule(30, default_tz="Europe/Berlin") == interval(30)


@pytest.mark.parametrize(
    ("value", "fragment", "hint"),
    [
        ("30", "schedule '30' is not a schedule", "expected seconds (a number)"),
        (None, "schedule None is not a schedule", "{'crontab':"),
        (True, "schedule True is not a schedule", "a timedelta"),
        ([30], "schedule [30] is not a schedule", "crontab(...)"),
        ({}, "expected a dict with one key", "{'every': seconds}"),
        ({"every": 1, "crontab": {}}, "expected a dict with one key", "{'every': seconds}"),
        ({"cron": {}}, "unknown kind 'cron'", "did you mean 'crontab'?"),
        ({"evry": 3}, "unknown kind 'evry'", "did you mean 'every'?"),
        ({"every": 0}, "must be more than 0 seconds", None),
        ({"crontab": "*/5 * * * *"}, "expected a dict of crontab fields", "for example"),
        ({"crontab": {"minutes": 5}}, "unknown crontab field 'minutes'", "did you mean 'minute'?"),
        ({"crontab": {"hour": 25}}, "crontab hour=25: 25 is out of range 0-23", None),
    ],
)
def test_to_schedule_says_what_it_expected(value, fragment, hint):
    with pytest.raises(ConfigError) as caught:
        to_schedule(value)
    assert fragment in caught.value.message
    if hint is not None:
        assert hint in caught.value.hint


def test_to_schedule_names_the_entry_in_its_errors():
    with pytest.raises(ConfigError) as caught:
        to_schedule({"crontab": {"hour": "25"}}, where="beat_schedule['cleanup']")
    assert caught.value.message == (
        "beat_schedule['cleanup']: crontab hour='25': 25 is out of range 0-23"
    )


# -- is_due -----------------------------------------------------------------------------------


NOW = utc(2024, 5, 1, 10, 0, 0)


@pytest.mark.parametrize(
    ("last_run", "expected"),
    [
        (None, (True, 30.0)),  # never ran: due at once
        (NOW - timedelta(seconds=10), (False, 20.0)),
        (NOW - timedelta(seconds=30), (True, 30.0)),
        (NOW - timedelta(hours=5), (True, 30.0)),  # missed runs: due once, not five times
        (NOW + timedelta(hours=1), (False, 30.0)),  # clock set back: wait one interval at most
    ],
)
def test_interval_is_due(last_run, expected):
    assert interval(30).is_due(last_run, NOW) == expected


@pytest.mark.parametrize(
    ("last_run", "now", "expected"),
    [
        (None, NOW, (False, 900.0)),  # never ran: wait for the next quarter hour
        (None, NOW + timedelta(seconds=30), (False, 870.0)),
        (utc(2024, 5, 1, 9, 45), NOW, (True, 900.0)),
        (utc(2024, 5, 1, 9, 45), NOW - timedelta(seconds=30), (False, 30.0)),
        (utc(2024, 5, 1, 9, 45), NOW + timedelta(seconds=2), (True, 898.0)),  # beat was late
        (utc(2024, 4, 1, 9, 45), NOW, (True, 900.0)),  # down for a month: due once
        (NOW, NOW + timedelta(minutes=5), (False, 600.0)),
    ],
)
def test_crontab_is_due(last_run, now, expected):
    assert crontab(minute="*/15").is_due(last_run, now) == expected


def test_is_due_compares_instants_not_wall_clocks():
    schedule = crontab(minute=30, hour=1, tz="America/New_York")
    first_pass = datetime(2024, 11, 3, 1, 30, tzinfo=NEW_YORK)  # fold=0: 05:30 UTC
    second_pass = datetime(2024, 11, 3, 1, 40, fold=1, tzinfo=NEW_YORK)  # 06:40 UTC
    due, wait = schedule.is_due(first_pass, second_pass)
    assert not due
    assert wait == (utc(2024, 11, 4, 6, 30) - utc(2024, 11, 3, 6, 40)).total_seconds()
