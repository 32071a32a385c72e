"""Every engine setting, declared once as data: name, type, default and what it is for.

The table drives validation (`app.conf.update`, `config_from_object`, `FLEET_*` environment
variables, fleet.toml), `fleet report`, and the docs. Unknown keys are errors that name the
closest valid key; wrong types are errors that say what was expected.

Layers, lowest first: defaults < app (code: `Fleet(...)`, `conf.update`) < file (fleet.toml)
< env (`FLEET_<NAME>`) < cli (command-line flags). `Settings.source(name)` tells which layer a
value came from.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from fleet.engine import celery_names
from fleet.operator_errors import ConfigError, closest

LAYERS = ("default", "app", "file", "env", "cli")

#: FLEET_* environment variables that are not settings (so never "unknown setting" errors).
OTHER_ENV = {"FLEET_APP", "FLEET_CONFIG", "FLEET_STATE_DIR", "FLEET_DEBUG",
             "FLEET_NODE_OPTIONS", "FLEET_READY_FD", "FLEET_PIDFILE_FD"}


@dataclass(frozen=True)
class Setting:
    name: str
    kind: str  # "str", "int", "float", "bool", "dict", "list", "any", "routes", "duration"
    default: Any
    doc: str
    optional: bool = False  # None is an accepted value
    secret: bool = False  # masked in reports
    minimum: float | None = None
    choices: tuple[str, ...] = ()  #: the only values accepted (a str setting)

    def check(self, value: Any, where: str = "") -> Any:
        """Return `value` converted to this setting's type, or raise ConfigError."""
        if value is None and (self.optional or self.default is None):
            return None
        checker = _CHECKERS[self.kind]
        try:
            converted = checker(value)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"{where}{self.name} = {masked_setting(self.name, value)!r} is not valid: "
                f"expected {_EXPECTED[self.kind]}",
                str(exc) if str(exc) else None,
            ) from None
        if self.minimum is not None and converted is not None and converted < self.minimum:
            raise ConfigError(
                f"{where}{self.name} = {masked_setting(self.name, value)!r} is too small",
                f"the minimum is {self.minimum}",
            )
        if self.choices and converted not in self.choices:
            raise ConfigError(f"{where}{self.name} = {value!r} is not valid",
                              f"expected one of {', '.join(self.choices)}")
        return converted

    def from_env(self, text: str) -> Any:
        """Parse an environment variable's text for this setting."""
        if self.kind in ("dict", "list", "routes", "any"):
            try:
                return json.loads(text)
            except json.JSONDecodeError as exc:
                raise ConfigError(
                    f"FLEET_{self.name.upper()} is not valid JSON ({exc.msg})",
                    f"expected {_EXPECTED[self.kind]} written as JSON",
                ) from None
        if text == "" and self.optional:
            return None
        return text


def _bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("1", "true", "yes", "on"):
        return True
    if isinstance(value, str) and value.lower() in ("0", "false", "no", "off", ""):
        return False
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    raise ValueError("")


def _int(value: Any) -> int:
    if isinstance(value, bool):
        raise TypeError("")
    if isinstance(value, float) and not value.is_integer():
        raise ValueError("")
    try:
        return int(value)
    except ValueError:
        raise ValueError("") from None  # "invalid literal for int()" says nothing more


def _float(value: Any) -> float:
    if isinstance(value, bool):
        raise TypeError("")
    try:
        return float(value)
    except ValueError:
        raise ValueError("") from None


def _duration(value: Any) -> float:
    """Seconds as a number, or a timedelta."""
    total_seconds = getattr(value, "total_seconds", None)
    if total_seconds is not None:
        return float(total_seconds())
    return _float(value)


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError("")
    return value


def _dict(value: Any) -> dict:
    if not isinstance(value, Mapping):
        raise TypeError("")
    return dict(value)


def _list(value: Any) -> list:
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    if not isinstance(value, list | tuple | set | frozenset):
        raise TypeError("")
    return list(value)


def _routes(value: Any) -> Any:
    """task_routes: a mapping (name or glob -> queue name or {"queue": name}), or a list of
    mappings and callables tried in order."""
    items = value if isinstance(value, list | tuple) else [value]
    for item in items:
        if callable(item):
            continue
        if not isinstance(item, Mapping):
            raise TypeError("")
        for route in item.values():
            if isinstance(route, str):
                continue
            if isinstance(route, Mapping) and isinstance(route.get("queue"), str):
                continue
            raise ValueError(f"a route must be a queue name or {{'queue': name}}, got {route!r}")
    return value


_CHECKERS: dict[str, Callable[[Any], Any]] = {
    "str": _str,
    "int": _int,
    "float": _float,
    "duration": _duration,
    "bool": _bool,
    "dict": _dict,
    "list": _list,
    "routes": _routes,
    "any": lambda value: value,
}

_EXPECTED = {
    "str": "a string",
    "int": "a whole number",
    "float": "a number",
    "duration": "a number of seconds (or a timedelta)",
    "bool": "true or false",
    "dict": "a mapping",
    "list": "a list (or a comma-separated string)",
    "routes": "a mapping of task name or glob to queue name, or a list of such mappings",
    "any": "any value",
}


def _s(name: str, kind: str, default: Any, doc: str, **extra: Any) -> Setting:
    return Setting(name, kind, default, doc, **extra)


SETTINGS: dict[str, Setting] = {s.name: s for s in [
    # -- broker and results --------------------------------------------------------------
    _s("broker_url", "str", None, "Broker URL; default: the embedded SQLite broker "
       "(sqlite:///<state dir>/broker.db).", secret=True),
    _s("result_backend", "str", None, "Where results are stored; default: the broker's store.",
       secret=True),
    _s("result_expires", "duration", 86400.0, "Seconds a task result is kept (0 or None: "
       "forever).", optional=True, minimum=0),
    _s("broker_key_prefix", "str", "fleet", "Prefix of every key fleet uses in a shared Redis."),
    _s("broker_connection_max_retries", "int", 8, "Connection attempts before a node gives up "
       "on an unreachable broker at start (0: try once).", minimum=0),
    _s("broker_connection_retry_delay", "float", 0.5, "First delay between connection "
       "attempts; it doubles each time.", minimum=0),
    _s("broker_connection_retry_max_delay", "float", 8.0, "Longest delay between connection "
       "attempts.", minimum=0),
    _s("broker_connection_timeout", "float", 4.0, "Seconds to wait for a connection to the "
       "broker.", minimum=0.1),
    _s("broker_transport_options", "dict", {}, "Extra options passed to the transport "
       "(e.g. {'socket_keepalive': True} for Redis)."),
    # -- tasks ---------------------------------------------------------------------------
    _s("task_default_queue", "str", "default", "Queue for tasks with no route."),
    _s("task_routes", "routes", None, "Task name or glob pattern -> queue, e.g. "
       "{'proj.tasks.resize_*': 'images'}.", optional=True),
    _s("task_default_priority", "int", 0, "Priority of messages that give none (0-9, higher "
       "runs first).", minimum=0),
    _s("task_acks_late", "bool", False, "Acknowledge after the task ran (re-run if the node "
       "dies) instead of when it starts."),
    _s("task_reject_on_worker_lost", "bool", False, "With acks_late: a task whose child "
       "process died (killed, out of memory) goes back to its queue instead of failing."),
    _s("task_track_started", "bool", False, "Store the STARTED state when a task begins."),
    _s("task_ignore_result", "bool", False, "Store no results by default."),
    _s("task_time_limit", "duration", None, "Hard time limit in seconds: the task's process "
       "is killed and replaced.", optional=True, minimum=0),
    _s("task_soft_time_limit", "duration", None, "Soft time limit in seconds: "
       "SoftTimeLimitExceeded is raised inside the task.", optional=True, minimum=0),
    _s("task_default_rate_limit", "str", None, "Rate limit for every task, e.g. '10/s', "
       "'100/m' (per node).", optional=True),
    _s("task_max_retries", "int", 3, "Default `max_retries` of tasks (None: retry forever).",
       optional=True, minimum=0),
    _s("task_default_retry_delay", "duration", 180.0, "Default seconds before a retry.",
       minimum=0),
    _s("task_annotations", "dict", None, "Per-task option overrides: {'proj.tasks.add': "
       "{'rate_limit': '10/s'}}.", optional=True),
    _s("task_send_sent_event", "bool", False, "Send a task-sent event when a task is sent."),
    _s("task_revoke_expires", "duration", 86400.0, "Seconds a revoke is kept in the broker "
       "(nodes started within that time still refuse the task).", minimum=1),
    # -- worker --------------------------------------------------------------------------
    _s("worker_pool", "str", "prefork", "Where a node runs tasks: prefork (child processes), "
       "solo (one at a time on a thread of the main process) or threads (worker_concurrency "
       "threads of the main process, for I/O-bound tasks); solo and threads refuse the "
       "limits that need a child process (fleet worker --help).",
       choices=("prefork", "solo", "threads")),
    _s("worker_concurrency", "int", None, "Child processes per node (default: CPU count); "
       "threads in the threads pool.", optional=True, minimum=1),
    _s("worker_prefetch_multiplier", "int", 4, "Messages a node reserves per child process "
       "(ETA tasks excepted).", minimum=1),
    _s("worker_prefetch_timeout", "float", 1.0, "Once a task has run this many seconds, the "
       "node reserves only for idle children and returns prefetched messages waiting behind "
       "busy ones, so an idle node runs them (a long task holds no other task hostage).",
       minimum=0.01),
    _s("worker_autoscale", "str", None, "Autoscale the pool between MAX,MIN children (e.g. "
       "'8,2'): grow while tasks wait, shrink after worker_autoscale_keepalive idle seconds.",
       optional=True),
    _s("worker_autoscale_keepalive", "float", 30.0, "Seconds a child of an autoscaled pool "
       "stays idle before the pool shrinks.", minimum=0),
    _s("worker_max_tasks_per_child", "int", None, "Replace a child after this many tasks.",
       optional=True, minimum=1),
    _s("worker_max_memory_per_child", "int", None, "Replace a child after a task leaves its "
       "resident memory above this many KiB.", optional=True, minimum=1),
    _s("worker_heartbeat_interval", "float", 2.0, "Seconds between a node's heartbeats.",
       minimum=0.05),
    _s("worker_heartbeat_timeout", "float", 8.0, "Seconds without a heartbeat after which a "
       "node is dead and its reserved messages return to their queues (so a dead node's "
       "acks-late tasks run again elsewhere within this plus one heartbeat interval).",
       minimum=0.1),
    _s("worker_eta_horizon", "float", 300.0, "ETA/countdown tasks due within this many "
       "seconds are reserved and held by a node; later ones wait in the broker.", minimum=0),
    _s("worker_lost_max_redeliveries", "int", 3, "An acks-late task whose process died this "
       "many times is failed instead of requeued again (a poison message).", minimum=0),
    _s("worker_send_task_events", "bool", False, "Send task events (fleet worker -E)."),
    _s("worker_proc_alive_timeout", "float", 10.0, "Seconds a new child has to report ready.",
       minimum=0.1),
    _s("worker_shutdown_grace", "float", 1.0, "Seconds a child gets to unwind after it was "
       "asked to stop a task (cold shutdown, terminate, hard limit) before SIGKILL.",
       minimum=0),
    _s("worker_disable_rate_limits", "bool", False, "Ignore every rate limit."),
    _s("worker_max_concurrency", "int", None, "Most children a node's pool may have: -c, "
       "--autoscale, pool_grow, TTIN and the remote autoscale command stop there (default: "
       "the larger of 64 and 4 x the CPU count).", optional=True, minimum=1),
    _s("worker_revokes_max", "int", 50000, "Most revoked task ids a node keeps in memory "
       "(the oldest go first); each is kept task_revoke_expires seconds.", minimum=1),
    _s("worker_max_message_size", "int", 16 * 1024 * 1024, "Largest message body a node "
       "takes, in characters of its JSON; bigger ones go to the dead-letter queue.",
       minimum=1024),
    # -- scheduling ----------------------------------------------------------------------
    _s("timezone", "str", "UTC", "Time zone (an IANA name) for crontab schedules and for "
       "eta/expires datetimes given without tzinfo; ETAs are stored as UTC epoch seconds."),
    _s("beat_schedule", "dict", {}, "Periodic tasks: {'name': {'task': ..., 'schedule': ...}}."),
    _s("beat_lease_seconds", "float", 10.0, "How long a beat leader's lease lasts; a standby "
       "takes over within this time after the leader dies.", minimum=1),
    _s("beat_max_loop_interval", "float", 5.0, "Longest a beat sleeps between looks at its "
       "schedule (it wakes earlier when an entry is due).", minimum=0.01),
    # -- app -----------------------------------------------------------------------------
    _s("include", "list", [], "Modules a worker imports at start (where the tasks live)."),
]}


class Settings(Mapping):
    """The effective settings of one app: a stack of layers, validated on every write."""

    def __init__(self, env: Mapping[str, str] | None = None):
        self._layers: dict[str, dict[str, Any]] = {layer: {} for layer in LAYERS}
        #: Sources to read at the first use of these settings (see `defer`).
        self._deferred: list[Callable[[], None]] = []
        self.load_env(os.environ if env is None else env)

    def defer(self, load: Callable[[], None]) -> None:
        """Call `load` (which updates these settings) just before they are next used, read
        or written: for a source that cannot be read yet (Django's settings while Django is
        still setting itself up). Later updates apply after it, as if it had run now."""
        self._deferred.append(load)

    def _load_deferred(self) -> None:
        while self._deferred:
            self._deferred.pop(0)()

    # Mapping protocol: the effective values of every known setting.
    def __getitem__(self, name: str) -> Any:
        if self._deferred:
            self._load_deferred()
        for layer in reversed(LAYERS[1:]):
            values = self._layers[layer]
            if name in values:
                return values[name]
        try:
            default = SETTINGS[name].default
        except KeyError:
            raise KeyError(unknown_setting(name).message) from None
        return default.copy() if isinstance(default, dict | list) else default

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):
            raise AttributeError(name)
        try:
            return self[name]
        except KeyError:
            raise AttributeError(unknown_setting(name).one_line()) from None

    def __setattr__(self, name: str, value: Any) -> None:
        if name.startswith("_"):
            object.__setattr__(self, name, value)
        else:
            self.update({name: value})

    def __iter__(self) -> Iterator[str]:
        return iter(SETTINGS)

    def __len__(self) -> int:
        return len(SETTINGS)

    def update(self, values: Mapping[str, Any] | None = None, /, *, layer: str = "app",
               where: str = "", spelled: str = "{}", **kwargs: Any) -> None:
        """Validate and set values in `layer` (default: the app's own settings).

        Celery's names are read as fleet's, with a warning, or refused (see
        `fleet.engine.celery_names`; `spelled` is how this source writes fleet's names).
        """
        if self._deferred:
            self._load_deferred()
        merged = {**(values or {}), **kwargs}
        if any(name not in SETTINGS for name in merged):
            merged = celery_names.translate(merged, SETTINGS, where, spelled)
        checked = {name: validate(name, value, where) for name, value in merged.items()}
        self._layers[layer].update(checked)

    def setdefault_app(self, name: str, value: Any) -> None:
        if value is not None:
            self.update({name: value})

    def load_env(self, env: Mapping[str, str]) -> None:
        """Read FLEET_<SETTING> variables into the env layer (unknown FLEET_ names that look
        like settings are errors, with the closest valid name; Celery's names after FLEET_
        are read as fleet's, with a warning, or refused)."""
        values, celery = {}, {}
        for key, text in env.items():
            if not key.startswith("FLEET_") or key in OTHER_ENV:
                continue
            name = key[len("FLEET_"):].lower()
            if name in SETTINGS:
                values[name] = SETTINGS[name].from_env(text)
            elif celery_names.lookup(key[len("FLEET_"):], SETTINGS) is not None:
                celery[key[len("FLEET_"):]] = text
            elif "_" in name and name.split("_", 1)[0] in _SETTING_GROUPS:
                hint = closest(name, SETTINGS)
                raise ConfigError(
                    f"environment variable {key} names no setting",
                    f"did you mean FLEET_{hint.upper()}?" if hint else "see `fleet report`",
                )
        where = "FLEET_ environment: "
        for name, text in celery_names.translate(celery, SETTINGS, where + "FLEET_",
                                                 "FLEET_{}").items():
            values.setdefault(name, SETTINGS[name].from_env(text))
        self._layers["env"] = {}
        self.update(values, layer="env", where=where)

    def source(self, name: str) -> str:
        """Which layer the effective value of `name` comes from."""
        if self._deferred:
            self._load_deferred()
        for layer in reversed(LAYERS[1:]):
            if name in self._layers[layer]:
                return layer
        return "default"

    def changes(self) -> dict[str, Any]:
        """Settings that differ from their defaults."""
        return {name: self[name] for name in SETTINGS if self.source(name) != "default"}

    def masked(self, only_changed: bool = False) -> dict[str, Any]:
        """Settings with every secret masked, for reports, `config show` and `inspect conf`:
        passwords in URLs, and inside dicts and lists (`broker_transport_options`) the
        values of secret-looking keys and any URL (fleet.masking)."""
        names = self.changes() if only_changed else SETTINGS
        return {name: masked_setting(name, self[name]) for name in names}


def masked_setting(name: str, value: Any) -> Any:
    """One setting's value fit to print (fleet.masking.mask_value)."""
    from fleet.masking import MASK, mask_url, mask_value

    if isinstance(value, str) and name in SETTINGS and SETTINGS[name].secret:
        masked = mask_url(value)
        return masked if "://" in value else (MASK if value else value)
    return mask_value(value)


_SETTING_GROUPS = {name.split("_", 1)[0] for name in SETTINGS}


def unknown_setting(name: str, where: str = "") -> ConfigError:
    hint = closest(name, SETTINGS)
    return ConfigError(
        f"{where}unknown setting {name!r}",
        f"did you mean {hint!r}?" if hint else "run `fleet report` to see every setting",
    )


def validate(name: str, value: Any, where: str = "") -> Any:
    setting = SETTINGS.get(name)
    if setting is None:
        raise unknown_setting(name, where)
    return setting.check(value, where)
