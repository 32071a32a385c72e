"""Periodic tasks: the scheduler behind `fleet beat` and `fleet worker -B`.

Entries come from `app.conf.beat_schedule` (or `[beat.schedule.NAME]` in fleet.toml); their
schedules are `fleet.engine.schedules` objects. The `Scheduler` is a plain object with one
method that matters, `tick()`: do what is due now, return how long to wait. `run_beat` loops
over it in its own process; `attach` runs it on a node's timer (no threads either way).

Exactly one scheduler dispatches (kept in the broker, so every beat of a fleet agrees):

* **Leader lease** `beat`: the leader renews it every third of `beat_lease_seconds`; any
  other beat is a standby that tries to take it every fifth of that, so it takes over about
  one lease period after the leader died. A leader that cannot renew stops dispatching when
  its lease may have run out, before anybody else can have it.
* **One claim per due run**: before sending, the leader claims `beat:claim:<entry>:<run>`
  with `add_value`, where `<run>` is the entry's last run; only one claim can succeed, so a
  run is never sent twice, even by two beats that both believe they lead (a paused leader
  waking up after its lease went to another).
* **Last run** of each entry, `beat:last:<entry>` (JSON: at, ran, task_id), is stored after
  each send. A restarted beat reads it, so it neither re-sends a run already sent nor
  forgets one: **an entry that came due while no beat was running is sent once at start**
  (not once per missed run), then follows its schedule. A crontab entry seen for the first
  time only records "now" and runs at its next time.

A run is sent at most once: a beat killed between its claim and its send loses that run (the
next leader sees the stale claim, counts the run as done, and goes on with the schedule).
"""

from __future__ import annotations

import json
import logging
import os
import selectors
import signal
import socket
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from fleet.engine import hooks
from fleet.engine.schedules import Schedule, crontab, to_schedule
from fleet.engine.transport.base import StoredResult
from fleet.exceptions import BrokerUnavailable
from fleet.operator_errors import ConfigError, closest

if TYPE_CHECKING:
    from fleet.engine.app import Fleet
    from fleet.engine.worker import Node

log = logging.getLogger("fleet.beat")

LEASE_NAME = "beat"
LAST_PREFIX = "beat:last:"
CLAIM_PREFIX = "beat:claim:"
ENTRY_KEYS = ("task", "schedule", "args", "kwargs", "options")
#: Claims only need to outlive the moment two beats could disagree about a run.
CLAIM_TTL = 24 * 3600.0


@dataclass
class Entry:
    """One periodic task."""

    name: str
    task: str
    schedule: Schedule
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)


def load_entries(app: Fleet) -> list[Entry]:
    """The app's `beat_schedule` as entries; a wrong entry is a ConfigError naming it."""
    return entries_from(app.conf.beat_schedule or {}, app.conf.timezone)


def entries_from(schedule: Mapping, timezone: str, prefix: str = "beat_schedule") -> list[Entry]:
    from fleet.engine.sending import CALL_OPTIONS, refuse_unknown

    entries = []
    for name, spec in sorted(dict(schedule).items()):
        where = f"{prefix}[{name!r}]"
        if not isinstance(spec, Mapping):
            raise ConfigError(f"{where} is {spec!r}, not a table",
                              "write {'task': 'proj.tasks.name', 'schedule': 30.0}")
        for key in spec:
            if key not in ENTRY_KEYS:
                hint = closest(str(key), ENTRY_KEYS)
                raise ConfigError(f"{where}: unknown key {key!r}",
                                  f"did you mean {hint!r}?" if hint else
                                  f"valid keys: {', '.join(ENTRY_KEYS)}")
        for key in ("task", "schedule"):
            if key not in spec:
                raise ConfigError(f"{where} has no {key!r}",
                                  "every entry needs 'task' (a task name) and 'schedule'")
        task = getattr(spec["task"], "name", spec["task"])
        if not isinstance(task, str) or not task:
            raise ConfigError(f"{where}: 'task' must be a task name, not {spec['task']!r}")
        every = to_schedule(spec["schedule"], default_tz=timezone, where=where)
        args, kwargs, options = spec.get("args", ()), spec.get("kwargs", {}), \
            spec.get("options", {})
        if not isinstance(args, list | tuple) or not isinstance(kwargs, Mapping) or \
                not isinstance(options, Mapping):
            raise ConfigError(f"{where}: 'args' must be a list, 'kwargs' and 'options' tables")
        try:
            refuse_unknown(dict(options), CALL_OPTIONS, "unknown option")
        except TypeError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        _check_encodable(where, args, kwargs)
        entries.append(Entry(name, task, every, list(args), dict(kwargs), dict(options)))
    return entries


def _check_encodable(where: str, args: Any, kwargs: Any) -> None:
    """Arguments travel as JSON: say so at start, not with a failed send at every run."""
    from fleet.engine import message as codec
    from fleet.exceptions import EncodeError

    try:
        codec.dumps([list(args), dict(kwargs)])
    except EncodeError as exc:
        raise ConfigError(f"{where}: 'args'/'kwargs' {exc.message}", exc.hint) from None


def check_file_section(config: Any) -> list[ConfigError]:
    """fleet.toml's [beat]: only `schedule` tables, each a valid entry (for config check)."""
    where = f"{config.path}: " if getattr(config, "path", None) else ""
    problems = []
    for key in config.beat:
        if key != "schedule":
            hint = closest(str(key), ["schedule"])
            problems.append(ConfigError(f"{where}unknown key beat.{key}",
                                        f"did you mean 'beat.{hint}'?" if hint else
                                        "periodic tasks go in [beat.schedule.NAME] tables"))
    schedule = config.beat.get("schedule", {})
    if not isinstance(schedule, Mapping):
        return [*problems, ConfigError(f"{where}beat.schedule must be a table")]
    timezone = config.settings.get("timezone", "UTC")
    for name, spec in schedule.items():
        try:
            entries_from({name: spec}, timezone, f"{where}[beat.schedule]")
        except ConfigError as exc:
            problems.append(exc)
    return problems


def _utc(seconds: float) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)


class Scheduler:
    """Sends each entry's task when it is due, while this process holds the beat lease."""

    def __init__(self, app: Fleet, owner: str | None = None,
                 clock: Callable[[], float] = time.time):
        self.app = app
        self.owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.clock = clock
        self.entries = load_entries(app)
        self.lease_seconds = float(app.conf.beat_lease_seconds)
        self.max_wait = float(app.conf.beat_max_loop_interval)
        self.leader_until = 0.0  #: our lease is certainly ours until then (wall clock)
        self.next_renew = 0.0
        self.stopped = False
        self.sent = 0
        self._standby_said = False

    @property
    def broker(self) -> Any:
        return self.app.broker

    def is_leader(self, now: float | None = None) -> bool:
        return (self.clock() if now is None else now) < self.leader_until

    # -- the loop's step ----------------------------------------------------------------------

    def tick(self) -> float:
        """Renew or seek the lease, send what is due; return seconds until the next tick."""
        if self.stopped:
            return self.max_wait
        now = self.clock()
        try:
            if now >= self.next_renew:
                self._renew(now)
            waits = [self.next_renew - now, self.max_wait]
            if self.is_leader(now):
                waits += [self._visit(entry, now) for entry in self.entries]
        except (*self.broker.transient_errors, BrokerUnavailable) as exc:
            log.warning("Beat: the broker failed (%s); trying again in 1s", exc)
            return 1.0
        except Exception:  # never let one bad entry stop the scheduler (or its node)
            log.exception("Beat: sending periodic tasks failed; trying again in 1s")
            return 1.0
        return max(0.01, min(waits))

    def _renew(self, now: float) -> None:
        was_leader = self.is_leader(now)
        if self.broker.acquire_lease(LEASE_NAME, self.owner, self.lease_seconds):
            self.leader_until = now + self.lease_seconds * 0.9
            self.next_renew = now + self.lease_seconds / 3
            if not was_leader:
                log.info("Beat %s is the leader now: sending periodic tasks (%d entries)",
                         self.owner, len(self.entries))
            return
        self.leader_until = 0.0
        self.next_renew = now + self.lease_seconds / 5
        if was_leader:
            log.warning("Beat %s lost the lease: another beat leads now; standing by",
                        self.owner)
        elif not self._standby_said:
            log.info("Beat %s: another beat holds the lease; standing by (taking over within "
                     "%gs if it stops)", self.owner, self.lease_seconds)
        self._standby_said = True

    def _visit(self, entry: Entry, now: float) -> float:
        record = self.last_run(entry.name)
        last = _utc(record["at"]) if record else None
        due, wait = entry.schedule.is_due(last, _utc(now))
        if not due:
            if record is None:  # a new crontab entry: remember when we first saw it
                self._remember(entry, now, ran=False, task_id=None, only_if_new=True)
            return wait
        run = f"{record['at']:.6f}" if record else "first"
        claim_key = f"{CLAIM_PREFIX}{entry.name}:{run}"
        claim = json.dumps({"owner": self.owner, "at": now})
        if not self.broker.add_value(claim_key, claim, CLAIM_TTL):
            self._unstick(entry, claim_key, now)
            return min(wait, self.lease_seconds / 5)  # sent by another beat: re-read soon
        self.send(entry, now)
        return wait

    def _unstick(self, entry: Entry, claim_key: str, now: float) -> None:
        """A run claimed long ago but never recorded: its beat died between the two. Record
        it as run at its claim time (it may have been sent), so the entry goes on."""
        text = self.broker.get_value(claim_key)
        claim = _decode(text, ("at", "owner"))
        if claim is None and text:  # garbage in the broker: no beat is recording this run
            log.warning("Beat: the claim %s in the broker is not one a beat wrote; counting "
                        "that run of %s as done now", claim_key, entry.name)
            self._remember(entry, now, ran=True, task_id=None)
            return
        if not claim or now - claim["at"] < self.lease_seconds:
            return  # the claimer is recording it right now
        log.warning("Beat: %s claimed the run of %s at %s but never recorded it (it died?); "
                    "counting that run as done", claim["owner"], entry.name, _iso(claim["at"]))
        self._remember(entry, claim["at"], ran=True, task_id=None)

    def send(self, entry: Entry, now: float) -> str:
        result = self.app.send_task(entry.task, entry.args, entry.kwargs, **entry.options)
        self._remember(entry, now, ran=True, task_id=result.id)
        self.sent += 1
        log.info("Beat: sent %s (%s) as task %s; next run %s", entry.name, entry.task,
                 result.id, entry.schedule.next_run(_utc(now)).isoformat(timespec="seconds"))
        return result.id

    def _remember(self, entry: Entry, now: float, ran: bool, task_id: str | None,
                  only_if_new: bool = False) -> None:
        key = LAST_PREFIX + entry.name
        value = json.dumps({"at": now, "ran": ran, "task_id": task_id})
        if only_if_new:
            self.broker.add_value(key, value)
        else:
            self.broker.set_values([StoredResult(key, value)])

    def last_run(self, name: str) -> dict | None:
        """The entry's last-run record; a corrupt one (anything but what `_remember`
        writes) is said once in the log and replaced by "first seen now", so the entry goes
        on with its schedule: a value in the broker never stops the beat (or its node)."""
        key = LAST_PREFIX + name
        text = self.broker.get_value(key)
        record = _decode(text, ("at",))
        if text and record is None:
            now = self.clock()
            log.warning("Beat: the last-run record %s in the broker is corrupt (%.60r); "
                        "replaced: %s counts as first seen now", key, text, name)
            record = {"at": now, "ran": False, "task_id": None}
            self.broker.set_values([StoredResult(key, json.dumps(record))])
        return record

    def stop(self) -> None:
        """Give the lease up (a standby takes over at once) and stop sending."""
        if self.stopped:
            return
        self.stopped = True
        if self.leader_until:
            try:
                self.broker.release_lease(LEASE_NAME, self.owner)
            except Exception as exc:
                log.warning("Beat: could not release the lease (%s); it expires in %gs",
                            exc, self.lease_seconds)
        self.leader_until = 0.0

    # -- what `fleet beat --list` shows -------------------------------------------------------

    def describe(self, now: float | None = None) -> list[dict]:
        """Each entry with its schedule, last run and next run (UTC ISO times)."""
        now = self.clock() if now is None else now
        rows = []
        for entry in self.entries:
            record = self.last_run(entry.name)
            rows.append({"name": entry.name, "task": entry.task,
                         "schedule": entry.schedule.describe(),
                         "last_run": _iso(record["at"]) if record and record.get("ran") else None,
                         "next_run": _iso(next_run(entry, record, now)),
                         "args": entry.args, "kwargs": entry.kwargs, "options": entry.options})
        return rows


def _decode(text: str | None, required: tuple[str, ...]) -> dict | None:
    """A record a beat wrote (JSON object, "at" a finite time, the `required` keys), or None."""
    if not text:
        return None
    try:
        record = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or any(key not in record for key in required):
        return None
    at = record.get("at")
    if isinstance(at, bool) or not isinstance(at, int | float) or \
            not 0 <= at < 253402300800:  # (year 10000: datetime's end; NaN fails too)
        return None
    return record


def next_run(entry: Entry, record: dict | None, now: float) -> float:
    """When the entry will be sent next (now, if it is due or overdue)."""
    if record is None:
        if isinstance(entry.schedule, crontab):
            return entry.schedule.next_run(_utc(now)).timestamp()
        return now
    return max(now, entry.schedule.next_run(_utc(record["at"])).timestamp())


def _iso(seconds: float) -> str:
    return _utc(seconds).isoformat(timespec="seconds")


# -- running it -------------------------------------------------------------------------------


def run_beat(app: Fleet) -> int:
    """`fleet beat`: tick until TERM or INT, then give the lease up. Returns the exit code."""
    from fleet.daemon import sd_notify
    from fleet.signals import SignalRecorder, signal_name

    scheduler = Scheduler(app)
    hooks.beat_init.send(sender=scheduler)
    recorder = SignalRecorder()
    recorder.install([signal.SIGTERM, signal.SIGINT])
    selector = selectors.DefaultSelector()
    selector.register(recorder, selectors.EVENT_READ)
    log.info("Beat %s starting: %d entries, lease %gs, broker %s", scheduler.owner,
             len(scheduler.entries), scheduler.lease_seconds, app.broker.describe())
    if not scheduler.entries:
        log.warning("Beat: no periodic tasks configured (beat_schedule is empty): set it in "
                    "the app or add [beat.schedule.NAME] tables to fleet.toml")
    # Under systemd (fleet-beat.service, Type=notify): ready once the loop runs.
    sd_notify(f"READY=1\nSTATUS=beat with {len(scheduler.entries)} entries")
    try:
        while True:
            wait = scheduler.tick()
            if selector.select(wait):
                received = recorder.drain()
                if received:
                    log.info("Beat: %s received, stopping", signal_name(received[0]))
                    sd_notify("STOPPING=1")
                    break
    finally:
        scheduler.stop()
        selector.close()
        recorder.restore()
        recorder.close()
    return 0


def attach(node: Node) -> Scheduler:
    """`fleet worker -B`: run the scheduler on the node's timer, in its main loop."""
    scheduler = Scheduler(node.app, owner=f"{node.name}#beat-{uuid.uuid4().hex[:8]}")
    hooks.beat_embedded_init.send(sender=scheduler)

    def beat_timer(now: float) -> float:
        return now + scheduler.tick()

    node.add_timer(beat_timer, 0.0)
    node.hooks["shutdown"].append(lambda _node, _how: scheduler.stop())
    return scheduler
