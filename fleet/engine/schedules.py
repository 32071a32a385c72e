"""Periodic-task schedules: when a beat entry runs next, and whether it is due now.

This module owns the two kinds of schedule a `beat_schedule` entry can have, and the
normalisation of whatever the user wrote there (a number, a timedelta, a `crontab(...)`, or a
dict from a TOML file) into one of them:

* `interval` - every N seconds, measured in real (UTC) time.
* `crontab`  - cron-style wall-clock times in a time zone, with cron's own field syntax
  (read by `fleet.engine.crontab_fields`).

Both share one small interface (`Schedule`): `next_run(after)`, `is_due(last_run, now)`,
`describe()` and `to_dict()` / `from_dict()`. Everything is pure computation: no clock is
read and nothing is stored, so beat decides what "now" is and tests can pin any instant.

Every datetime going in must be aware (a naive one is a ValueError: guessing its zone is how
schedules drift by hours). Every datetime coming out is in UTC, because two aware datetimes
that share a ZoneInfo are compared by their wall time, ignoring `fold`, which gives the wrong
order inside a repeated DST hour; UTC instants always compare correctly.
"""

from __future__ import annotations

import bisect
import calendar
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from fleet.engine.crontab_fields import FIELDS, parse_field
from fleet.operator_errors import ConfigError, closest

__all__ = ["Schedule", "crontab", "from_dict", "interval", "to_schedule"]

MINUTE = timedelta(minutes=1)
ONE_DAY = timedelta(days=1)
# Longest backward clock change we look out for: real ones are 1 hour (30 minutes on Lord
# Howe Island); 3 hours leaves room for historical "double summer time".
_MAX_BACKWARD_SHIFT = timedelta(hours=3)
# 400 years is a full Gregorian cycle: a crontab that fires at all fires within it.
_MONTHS_SEARCHED = 400 * 12


# -- shared interface -----------------------------------------------------------------------


class Schedule(ABC):
    """What beat needs from a schedule."""

    @abstractmethod
    def next_run(self, after: datetime) -> datetime:
        """The first instant strictly after `after` (aware) when this runs, in UTC."""

    @abstractmethod
    def describe(self) -> str:
        """One line for humans: logs, `fleet beat --list`, error messages."""

    @abstractmethod
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict that `from_dict` turns back into an equal schedule."""

    def is_due(self, last_run: datetime | None, now: datetime) -> tuple[bool, float]:
        """(run now?, seconds until beat should ask again).

        Due when the first run after `last_run` is not in the future. Runs missed while beat
        was down are not replayed one by one: the entry is due once, then back on schedule.
        When due, the delay is until the run after this one.
        """
        now_utc = _as_utc(now, "now")
        if last_run is None:
            return self._due_without_history(now_utc)
        due_at = self.next_run(last_run)
        if due_at <= now_utc:
            return True, _seconds_between(now_utc, self.next_run(now_utc))
        return False, _seconds_between(now_utc, due_at)

    @abstractmethod
    def _due_without_history(self, now: datetime) -> tuple[bool, float]:
        """`is_due` for an entry that has never run."""


# -- interval -------------------------------------------------------------------------------


@dataclass(frozen=True)
class interval(Schedule):  # lower case like crontab: users write them like functions
    """Run every `seconds` seconds of real time (DST changes do not stretch or shrink it).

    `seconds` may be given as a number or a timedelta; it is stored as float seconds.
    An interval that has never run is due at once (`is_due(None, now)` is True): a new
    `every 30s` entry should not sit idle for its first 30 seconds.
    """

    seconds: float  # a timedelta is accepted too, and converted

    def __post_init__(self) -> None:
        object.__setattr__(self, "seconds", _interval_seconds(self.seconds))

    def next_run(self, after: datetime) -> datetime:
        return _as_utc(after, "after") + timedelta(seconds=self.seconds)

    def is_due(self, last_run: datetime | None, now: datetime) -> tuple[bool, float]:
        """As `Schedule.is_due`; a clock set backwards never makes it wait over one interval."""
        due, wait = super().is_due(last_run, now)
        return due, min(wait, self.seconds)

    def _due_without_history(self, now: datetime) -> tuple[bool, float]:
        return True, self.seconds

    def describe(self) -> str:
        return f"every {_human_seconds(self.seconds)}"

    def to_dict(self) -> dict[str, Any]:
        return {"every": self.seconds}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> interval:
        """The inverse of `to_dict`: {"every": seconds}."""
        schedule = from_dict(data)
        if not isinstance(schedule, cls):
            raise ConfigError(f"{dict(data)!r} is not an interval", "expected {'every': seconds}")
        return schedule


def _interval_seconds(value: object) -> float:
    """`value` as positive float seconds, or a ConfigError saying what was expected."""
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise ConfigError(f"interval {value!r}: expected a number of seconds or a timedelta")
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"interval {value!r}: must be more than 0 seconds (and finite)")
    return seconds


def _human_seconds(seconds: float) -> str:
    """30 -> '30s', 90 -> '1m30s', 86400 -> '1d', 0.5 -> '0.5s'."""
    if seconds < 60:
        return f"{seconds:g}s"
    whole_minutes, rest = divmod(seconds, 60)
    parts = []
    remaining = int(whole_minutes) * 60
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    if rest:
        parts.append(f"{rest:g}s")
    return "".join(parts)


# -- time zones -----------------------------------------------------------------------------


def _resolve_zone(tz: str | tzinfo) -> tzinfo:
    """A tzinfo from an IANA name or a tzinfo, or a ConfigError with a did-you-mean."""
    if tz is UTC:
        return ZoneInfo("UTC")  # so tz=datetime.UTC equals tz="UTC" (and its round trip)
    if isinstance(tz, tzinfo):
        return tz
    if not isinstance(tz, str):
        raise ConfigError(f"crontab tz={tz!r}: expected an IANA zone name like 'Europe/Berlin'")
    try:
        return ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        suggestion = closest(tz, available_timezones())
        raise ConfigError(
            f"crontab tz={tz!r}: unknown time zone",
            f"did you mean {suggestion!r}?" if suggestion else "use an IANA name like 'UTC'",
        ) from None


def _zone_name(tz: str | tzinfo | None) -> str | None:
    """The IANA name to write in to_dict (None stays None: 'use the caller's zone')."""
    if tz is None or isinstance(tz, str):
        return tz
    if tz is UTC:
        return "UTC"
    name = getattr(tz, "key", None)
    if not name:
        raise ConfigError(
            f"crontab tz={tz!r} has no IANA name, so it cannot be written out",
            "give tz as a name like 'Europe/Berlin'",
        )
    return name


def _as_utc(moment: datetime, what: str) -> datetime:
    if not isinstance(moment, datetime):
        raise TypeError(f"{what} must be a datetime, not {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{what}={moment!r} is naive: schedules need aware datetimes")
    return moment.astimezone(UTC)


def _seconds_between(start: datetime, end: datetime) -> float:
    return max(0.0, (end - start).total_seconds())


def _exists(wall: datetime, zone: tzinfo) -> bool:
    """False for wall times skipped when the clocks jump forward."""
    there_and_back = wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone)
    return there_and_back.replace(tzinfo=None) == wall


def _gap_end(wall: datetime, zone: tzinfo) -> datetime:
    """The UTC instant the clocks jumped forward over `wall` (a time that does not exist).

    In a gap, fold=1 reads `wall` with the new offset (an instant before the jump) and
    fold=0 with the old one (an instant after it); the jump is the first minute in between
    that already has the new offset.
    """
    before = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    after = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    new_offset = after.astimezone(zone).utcoffset()
    minutes = int((after - before) / MINUTE)
    first = bisect.bisect_left(
        range(minutes + 1), True,
        key=lambda k: (before + k * MINUTE).astimezone(zone).utcoffset() == new_offset,
    )
    return before + first * MINUTE


def _offset_at(instant: datetime, zone: tzinfo) -> timedelta:
    return instant.astimezone(zone).utcoffset() or timedelta(0)


def _start_wall(after: datetime, offset: timedelta) -> datetime:
    """The naive wall minute after `after` (UTC) read with `offset`: where a scan begins."""
    wall = (after + offset).replace(tzinfo=None, second=0, microsecond=0)
    return wall + MINUTE


# -- crontab --------------------------------------------------------------------------------


@dataclass(frozen=True)
class crontab(Schedule):  # lower case, as cron-like libraries spell it
    """Wall-clock times in a time zone, written like a crontab line.

    Fields take an int, a list of ints, or cron text: `*`, `*/n`, `n`, `a-b`, `a-b/n`, `a/n`
    (a to the top, every n) and comma lists of these (`'*/2,1'`, `'1-5,10-15/2'`).
    day_of_week takes names (`mon`, `Monday`; Sunday is 0 and also 7) and month_of_year
    takes `jan`..`dec` or full names, case-insensitive, in ranges too (`mon-fri`). A range
    that runs backwards wraps: `fri-mon` is Fri, Sat, Sun, Mon; hour `22-2` is 22..2.
    Invalid fields raise ConfigError naming the field, the value and the valid range.

    Day of month and day of week, as in Vixie cron: when BOTH are restricted (neither
    covers every day), a day matches if EITHER matches, so `day_of_month=13,
    day_of_week='fri'` runs on every 13th and on every Friday. When one is `*`, only the other
    counts. ("Restricted" means the values are not the whole range, so `*/1` and `0-6` count
    as `*`.) Celery ANDs them instead; we keep cron's meaning so a line copied from a crontab
    behaves the same. "The first Monday" is therefore not expressible here: use
    `day_of_week='mon'` and check the date in the task.

    A crontab that can never fire (`day_of_month=30, month_of_year=2`) is a ConfigError at
    construction; day 29 in February is fine and fires in leap years.

    Time zone: `tz` is an IANA name or a tzinfo. None means "the caller's zone":
    `to_schedule(value, default_tz=app timezone)` (what beat does) fills it in; a crontab
    still without one runs in UTC.

    Daylight saving time (see `next_run`): a schedule with a fixed hour names a time of day
    and runs once per matching day: a time skipped by spring-forward runs at the first
    instant after the gap, and a time that occurs twice at fall-back runs only the first
    time. A schedule whose hour is `*` (hourly or finer) follows real time instead: in the
    repeated hour it fires in both passes, and skipped minutes are simply skipped, so
    `*/15` fires every 15 real minutes straight through both changes.
    """

    # As given, then rewritten to canonical cron text ('*/15', '1,5,9', 'mon-fri').
    minute: str | int | Iterable[int] = field(default="*", compare=False)
    hour: str | int | Iterable[int] = field(default="*", compare=False)
    day_of_week: str | int | Iterable[int] = field(default="*", compare=False)
    day_of_month: str | int | Iterable[int] = field(default="*", compare=False)
    month_of_year: str | int | Iterable[int] = field(default="*", compare=False)
    tz: str | tzinfo | None = field(default=None, compare=False)

    # Parsed values (sorted) and the resolved zone are what equality and hashing use, so
    # crontab(minute="*/30") == crontab(minute=[0, 30]) and tz="UTC" == tz=ZoneInfo("UTC").
    _minutes: tuple[int, ...] = field(init=False, repr=False)
    _hours: tuple[int, ...] = field(init=False, repr=False)
    _days_of_week: tuple[int, ...] = field(init=False, repr=False)
    _days_of_month: tuple[int, ...] = field(init=False, repr=False)
    _months: tuple[int, ...] = field(init=False, repr=False)
    _zone: tzinfo | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        for name, spec in FIELDS.items():
            text, values = parse_field(spec, getattr(self, name))
            object.__setattr__(self, name, text)
            object.__setattr__(self, _PARSED[name], values)
        object.__setattr__(self, "_zone", None if self.tz is None else _resolve_zone(self.tz))
        self._check_can_fire()

    def _check_can_fire(self) -> None:
        """Refuse day/month combinations that never exist (Feb 30): beat would wait forever."""
        if self._dow_restricted:
            return  # a weekday comes round every week (and ORs with day_of_month)
        longest = {m: 29 if m == 2 else calendar.monthrange(2001, m)[1] for m in self._months}
        if any(d <= longest[m] for m in self._months for d in self._days_of_month):
            return
        raise ConfigError(
            f"crontab day_of_month={self.day_of_month!r} month_of_year={self.month_of_year!r}: "
            "never fires, no month in month_of_year has such a day",
            "February has at most 29 days; April, June, September and November have 30",
        )

    @property
    def _dom_restricted(self) -> bool:
        return self._days_of_month != FIELDS["day_of_month"].every

    @property
    def _dow_restricted(self) -> bool:
        return self._days_of_week != FIELDS["day_of_week"].every

    @property
    def _follows_real_time(self) -> bool:
        """Hour `*`: hourly or finer, so DST changes are followed in real time."""
        return self._hours == FIELDS["hour"].every

    # -- interface --------------------------------------------------------------------------

    def next_run(self, after: datetime) -> datetime:
        """The first matching minute strictly after `after`, as a UTC datetime.

        Matching happens on the wall clock of the schedule's zone; see the class docstring for
        DST. For real-time (hour `*`) schedules the wall times of a repeated hour map to two
        instants, so two scans run - one reading them as the first pass, one as the second -
        and the earlier result wins.
        """
        after_utc = _as_utc(after, "after")
        zone = self._zone or UTC
        offset_now = _offset_at(after_utc, zone)
        first_pass = _start_wall(after_utc, offset_now)
        if not self._follows_real_time:
            return self._first_instant(first_pass, after_utc, lambda w: _fixed(w, zone))
        # The second pass of a repeated hour re-reads earlier wall times: start it early.
        offset_later = _offset_at(after_utc + _MAX_BACKWARD_SHIFT, zone)
        second_pass = _start_wall(after_utc, min(offset_now, offset_later))
        return min(
            self._first_instant(first_pass, after_utc, lambda w: _real(w, zone, fold=0)),
            self._first_instant(second_pass, after_utc, lambda w: _real(w, zone, fold=1)),
        )

    def _due_without_history(self, now: datetime) -> tuple[bool, float]:
        """Never run: not due; beat should remember `now` and ask again at the next run."""
        return False, _seconds_between(now, self.next_run(now))

    def describe(self) -> str:
        """`crontab(*/15 * * * *) Europe/Berlin`: cron's order, minute first."""
        fields = (self.minute, self.hour, self.day_of_month, self.month_of_year, self.day_of_week)
        zone = self._zone or UTC
        return f"crontab({' '.join(str(f) for f in fields)}) {getattr(zone, 'key', None) or zone}"

    def to_dict(self) -> dict[str, Any]:
        fields = {name: getattr(self, name) for name in FIELDS}
        return {"crontab": {**fields, "tz": _zone_name(self.tz)}}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> crontab:
        """The inverse of `to_dict`: {"crontab": {"minute": ..., "tz": ...}}."""
        schedule = from_dict(data)
        if not isinstance(schedule, cls):
            raise ConfigError(f"{dict(data)!r} is not a crontab", "expected {'crontab': {...}}")
        return schedule

    def with_default_tz(self, tz: str | tzinfo | None) -> crontab:
        """This crontab in `tz` if it names no zone of its own (beat passes the app's)."""
        if self.tz is not None or tz is None:
            return self
        return replace(self, tz=tz)

    # -- search -----------------------------------------------------------------------------

    def _first_instant(
        self, wall: datetime, after: datetime, resolve: Callable[[datetime], datetime | None]
    ) -> datetime:
        """The first matching wall time from `wall` on whose instant is after `after`.

        `resolve` turns a wall time into a UTC instant (None: skip it). It never goes
        backwards as the wall time grows, so the first hit is the earliest; the loop only
        turns more than once around a DST change.
        """
        while True:
            wall = self._next_match(wall)
            instant = resolve(wall)
            if instant is not None and instant > after:
                return instant
            wall += MINUTE

    def _next_match(self, wall: datetime) -> datetime:
        """The first matching naive wall time at or after `wall` (whole minutes)."""
        day = self._next_day(wall.date())
        if day == wall.date():
            at = self._next_time(wall.hour, wall.minute)
            if at is not None:
                return datetime.combine(day, at)
            day = self._next_day(day + ONE_DAY)
        return datetime.combine(day, time(self._hours[0], self._minutes[0]))

    def _next_time(self, hour: int, minute: int) -> time | None:
        """The first matching time of day at or after hour:minute, None if none is left."""
        for h in self._hours[bisect.bisect_left(self._hours, hour):]:
            start = minute if h == hour else 0
            index = bisect.bisect_left(self._minutes, start)
            if index < len(self._minutes):
                return time(h, self._minutes[index])
        return None

    def _next_day(self, day: date) -> date:
        """The first matching date at or after `day`, skipping whole months that cannot."""
        for _ in range(_MONTHS_SEARCHED):
            if day.month in self._months:
                found = self._day_in_month(day)
                if found is not None:
                    return found
            day = self._next_month(day)
        raise ConfigError(f"{self.describe()} never fires")  # ruled out in __post_init__

    def _day_in_month(self, day: date) -> date | None:
        """The first matching date from `day` to the end of its month, if any."""
        last = calendar.monthrange(day.year, day.month)[1]
        # Without a weekday restriction only the listed days can match: try just those.
        numbers = self._days_of_month if not self._dow_restricted else range(1, 32)
        for number in numbers[bisect.bisect_left(numbers, day.day):]:
            if number > last:
                return None
            candidate = day.replace(day=number)
            if self._day_matches(candidate):
                return candidate
        return None

    def _next_month(self, day: date) -> date:
        """The 1st of the next month in month_of_year after `day`'s month."""
        index = bisect.bisect_right(self._months, day.month)
        if index < len(self._months):
            return date(day.year, self._months[index], 1)
        return date(day.year + 1, self._months[0], 1)

    def _day_matches(self, day: date) -> bool:
        by_month = day.day in self._days_of_month
        by_week = day.isoweekday() % 7 in self._days_of_week  # isoweekday: Sunday is 7
        if self._dom_restricted and self._dow_restricted:
            return by_month or by_week  # cron: either restriction is enough
        return by_month and by_week


_PARSED = {
    "minute": "_minutes",
    "hour": "_hours",
    "day_of_week": "_days_of_week",
    "day_of_month": "_days_of_month",
    "month_of_year": "_months",
}


def _fixed(wall: datetime, zone: tzinfo) -> datetime:
    """A time of day: the first pass of a repeated time; after the gap for a skipped one."""
    if not _exists(wall, zone):
        return _gap_end(wall, zone)
    return wall.replace(tzinfo=zone, fold=0).astimezone(UTC)


def _real(wall: datetime, zone: tzinfo, fold: int) -> datetime | None:
    """Real-time reading: one pass of a repeated time (by `fold`); skipped times are None."""
    if not _exists(wall, zone):
        return None
    return wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)


# -- normalisation --------------------------------------------------------------------------

_EXPECTED = (
    "expected seconds (a number), a timedelta, crontab(...), interval(...), "
    "{'every': seconds} or {'crontab': {'minute': ..., 'hour': ...}}"
)


def to_schedule(
    value: object, *, default_tz: str | tzinfo | None = None, where: str | None = None
) -> Schedule:
    """Turn a `beat_schedule` entry's "schedule" into a Schedule.

    A number or timedelta becomes an interval; a crontab or interval is kept; a dict (as a
    TOML file gives) goes through `from_dict`. A crontab without a zone gets `default_tz`
    (beat passes the app's `timezone` setting). `where` (e.g. "beat_schedule['cleanup']")
    prefixes error messages so the operator knows which entry is wrong.
    """
    try:
        schedule = _coerce(value)
        if isinstance(schedule, crontab):
            schedule = schedule.with_default_tz(default_tz)
    except ConfigError as exc:
        if where is None:
            raise
        raise ConfigError(f"{where}: {exc.message}", exc.hint) from None
    return schedule


def _coerce(value: object) -> Schedule:
    if isinstance(value, Schedule):
        return value
    if isinstance(value, int | float | timedelta) and not isinstance(value, bool):
        return interval(value)
    if isinstance(value, Mapping):
        return from_dict(value)
    raise ConfigError(f"schedule {value!r} is not a schedule", _EXPECTED)


def from_dict(data: Mapping[str, Any]) -> Schedule:
    """{"every": seconds} -> interval, {"crontab": {field: value, "tz": name}} -> crontab."""
    if not isinstance(data, Mapping) or len(data) != 1:
        raise ConfigError(f"schedule {data!r}: expected a dict with one key", _EXPECTED)
    ((kind, body),) = data.items()
    if kind == "every":
        return interval(body)
    if kind == "crontab":
        return _crontab_from_mapping(body)
    suggestion = closest(str(kind), ["every", "crontab"])
    raise ConfigError(
        f"schedule {dict(data)!r}: unknown kind {kind!r}",
        f"did you mean {suggestion!r}?" if suggestion else _EXPECTED,
    )


def _crontab_from_mapping(body: object) -> crontab:
    if not isinstance(body, Mapping):
        raise ConfigError(
            f"schedule {{'crontab': {body!r}}}: expected a dict of crontab fields",
            "for example {'crontab': {'minute': '*/15', 'tz': 'Europe/Berlin'}}",
        )
    known = [*FIELDS, "tz"]
    for key in body:
        if key not in known:
            suggestion = closest(str(key), known)
            raise ConfigError(
                f"unknown crontab field {key!r}",
                f"did you mean {suggestion!r}?" if suggestion else f"valid: {', '.join(known)}",
            )
    return crontab(**body)
