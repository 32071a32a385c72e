"""Which app a command works on, and where its settings come from; options declared as data.

`AppOptions` holds what -A/--app, -b/--broker, --result-backend, --workdir and --config said,
and loads the app they name with its settings in layers, lowest first:

    defaults < the app's own code < fleet.toml < FLEET_* variables < these options

Every command (`fleet worker`, `fleet call`, ...) and every node `fleet multi` starts loads
its app through here, so they all agree. `Option` declares a command-line option once, as data
(flags, value kind, help, default); the CLI builds its click options from these records and
`fleet multi` its node options (`APP_OPTIONS` here, the worker's in
fleet.worker_setup.options). Nothing here imports the engine until an app is loaded.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fleet.operator_errors import UsageError

if TYPE_CHECKING:
    from fleet.config_file import FileConfig
    from fleet.engine.app import Fleet

#: The kinds of value an option takes.
TEXT = "text"
COUNT = "count"  #: a whole number >= 1
SECONDS = "seconds"  #: a number > 0
NAMES = "names"  #: a comma list of names: images,video
BOUNDS = "bounds"  #: two whole numbers: MAX,MIN
FLAG = "flag"  #: no value: given or not


@dataclass(frozen=True)
class Option:
    """A command-line option: its flags, the value it takes, its help and default."""

    dest: str  #: the parameter (and field) it fills: "concurrency"
    flags: tuple[str, ...]  #: every spelling, the long one among them: ("-c", "--concurrency")
    help: str
    kind: str = TEXT
    metavar: str | None = None
    default: Any = None
    show_default: bool = False
    #: `fleet multi` passes it on to each node (and fleet.toml's [multi] may set it).
    multi: bool = True
    #: The node expands %n, %i and %I in it again itself, per process (its files).
    node_expands: bool = False
    #: The only values it takes (a text option), or () for any.
    choices: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        """The canonical (long) spelling: `--concurrency`."""
        return next(flag for flag in self.flags if flag.startswith("--"))

    @property
    def aliases(self) -> tuple[str, ...]:
        return tuple(flag for flag in self.flags if flag != self.name)

    @property
    def takes_value(self) -> bool:
        return self.kind != FLAG

    def convert(self, text: str) -> Any:
        """The value `text` stands for; ValueError if the option would refuse it."""
        if self.kind == COUNT:
            value = int(text)
            if value < 1:
                raise ValueError(f"{self.name}: {value} is less than 1")
            return value
        if self.kind == SECONDS:
            seconds = float(text)
            if not (math.isfinite(seconds) and seconds > 0):
                raise ValueError(f"{self.name}: {text} is not a number of seconds > 0")
            return seconds
        if self.kind == FLAG:
            raise ValueError(f"{self.name} is a flag and takes no value")
        if self.choices and text not in self.choices:
            raise ValueError(f"{self.name}: {text!r} is not one of {', '.join(self.choices)}")
        return text


APP_OPTIONS: tuple[Option, ...] = (
    Option("app", ("-A", "--app"), "The app: proj:attribute, a module (proj.tasks), or a "
           "package: proj, then proj.fleet, proj.app, proj.tasks (its `app`, or its only "
           "Fleet).", metavar="APP"),
    Option("broker", ("-b", "--broker"), "Broker URL (default: the embedded SQLite broker in "
           "the state directory).", metavar="URL"),
    Option("result_backend", ("--result-backend",), "Where results are stored (default: the "
           "broker).", metavar="URL"),
    Option("workdir", ("--workdir",), "Change to DIR first (the app is imported from there).",
           metavar="DIR", multi=False),  # multi runs each node in its own --workdir itself
    Option("config", ("--config",), "fleet.toml to read (default: ./fleet.toml, or "
           "$FLEET_CONFIG).", metavar="PATH"),
)


@dataclass
class AppOptions:
    """The app options as given (None: not given), and the app they name, loaded once."""

    app: str | None = None
    broker: str | None = None
    result_backend: str | None = None
    workdir: str | None = None
    config: str | None = None
    _file: FileConfig | None = field(default=None, repr=False)
    _app: Fleet | None = field(default=None, repr=False)

    def file_config(self) -> FileConfig:
        """fleet.toml as read from the working directory (entered first), cached."""
        if self._file is None:
            from fleet.config_file import find_config, load_config

            self.enter_workdir()
            self._file = load_config(find_config(self.config))
        return self._file

    def enter_workdir(self) -> None:
        if self.workdir:
            try:
                os.chdir(os.path.expanduser(self.workdir))
            except OSError as exc:
                raise UsageError(f"cannot use --workdir {self.workdir}: {exc.strerror}") from None

    def app_spec(self) -> str | None:
        return self.app or os.environ.get("FLEET_APP") or self.file_config().app

    def app_workdir(self) -> str | None:
        """Where to import the app from: --workdir (already entered) or fleet.toml's."""
        if self.workdir:
            return None
        directory = self.file_config().resolved_workdir()
        return str(directory) if directory else None

    def load_app(self, required: bool = True) -> Fleet:
        """The app from -A (or FLEET_APP, or fleet.toml), with file and option settings applied.

        Commands that only move messages (call, result, queues, purge) work without an app:
        they get a bare one pointed at the configured broker.
        """
        if self._app is not None:
            return self._app
        from fleet.engine.app import Fleet, load_app

        config = self.file_config()
        spec = self.app_spec()
        if spec:
            app = load_app(spec, self.app_workdir())
        elif required:
            raise UsageError("no app given", "pass -A/--app (e.g. -A proj), set FLEET_APP, "
                             "or set app = \"proj\" in fleet.toml")
        else:
            app = Fleet()
        app.conf.update(config.engine_settings(), layer="file", where=f"{config.path}: ")
        given = {"broker_url": self.broker, "result_backend": self.result_backend}
        app.conf.update({k: v for k, v in given.items() if v}, layer="cli")
        app.close()  # settings changed: reopen connections on next use
        self._app = app
        return app


# -- values typed on a command line ------------------------------------------------------------


def parse_overrides(items: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """['task_acks_late=true', 'task_default_queue=jobs'] -> {...} (JSON values, else text)."""
    values = {}
    for item in items:
        name, sep, text = item.partition("=")
        if not sep or not name:
            raise UsageError(f"cannot read setting {item!r}",
                             "write SETTING=VALUE, e.g. task_acks_late=true")
        try:
            values[name.strip()] = json.loads(text)
        except json.JSONDecodeError:
            values[name.strip()] = text
    return values


def split_list(text: str | None) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c'] (queue names, node names)."""
    return [part.strip() for part in (text or "").split(",") if part.strip()]
