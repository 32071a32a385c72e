"""fleet.toml: the app, its engine settings, its fleet and its schedule, in one file.

fleet reads `--config PATH`, else `$FLEET_CONFIG`, else `./fleet.toml` if present. The file
is only ever read, never rewritten. Precedence, lowest first:

    defaults < the app's own code < fleet.toml < FLEET_* environment variables < CLI flags

Layout (see the repository's top-level fleet.toml for a documented example)::

    app = "proj"                  # what -A would say
    workdir = "examples"          # import the app from here (relative to this file)
    broker = "redis://127.0.0.1:6379/0"
    result_backend = "..."        # optional

    [settings]                    # engine settings: the same keys as app.conf
    task_routes = { "proj.tasks.resize_*" = "images" }

    [multi]                       # the fleet `fleet multi start` starts with no arguments
    [beat.schedule.NAME]          # periodic tasks

Every unknown key is an error naming the file, the key and the closest valid key. Celery's
setting names in [settings] are read as fleet's (with a warning) or refused.
"""

from __future__ import annotations

import importlib
import logging
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet.engine import celery_names
from fleet.engine.settings import SETTINGS, validate
from fleet.operator_errors import ConfigError, closest

log = logging.getLogger("fleet.config")
_WARNED: set[str] = set()  #: each untrusted ./fleet.toml is reported once per process

TOP_LEVEL_KEYS = {"app", "workdir", "broker", "result_backend", "settings", "multi", "beat"}
DEFAULT_NAME = "fleet.toml"


@dataclass
class FileConfig:
    """What a fleet.toml says, validated (settings already type-checked)."""

    path: Path | None = None
    app: str | None = None
    #: Directory to import the app from (relative to the file's directory).
    workdir: str | None = None
    broker: str | None = None
    result_backend: str | None = None
    settings: dict[str, Any] = field(default_factory=dict)
    multi: dict[str, Any] = field(default_factory=dict)
    beat: dict[str, Any] = field(default_factory=dict)

    def resolved_workdir(self) -> Path | None:
        if not self.workdir:
            return None
        base = self.path.parent if self.path else Path.cwd()
        return (base / Path(self.workdir).expanduser()).resolve()

    def engine_settings(self) -> dict[str, Any]:
        """Settings for the app's "file" layer (broker and backend included)."""
        values = dict(self.settings)
        if self.broker:
            values["broker_url"] = self.broker
        if self.result_backend:
            values["result_backend"] = self.result_backend
        schedule = self.beat.get("schedule")
        if schedule:
            values["beat_schedule"] = schedule
        return values


def find_config(explicit: str | None = None) -> Path | None:
    """The config file to read: --config, $FLEET_CONFIG, or ./fleet.toml if it exists."""
    given = explicit or os.environ.get("FLEET_CONFIG")
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            source = "--config" if explicit else "FLEET_CONFIG"
            raise ConfigError(f"config file {path} (from {source}) does not exist",
                              "check the path, or leave it out to use ./fleet.toml")
        return path
    default = Path(DEFAULT_NAME)
    if not default.is_file():
        return None
    distrust = untrusted_by_root(default)
    if distrust is None:
        return default
    if str(default.absolute()) not in _WARNED:
        _WARNED.add(str(default.absolute()))
        log.warning("fleet: ignoring ./fleet.toml: %s, and as root fleet loads no code "
                    "through such a file; pass --config ./fleet.toml to use it anyway",
                    distrust)
    return None


def untrusted_by_root(path: Path) -> str | None:
    """Why root must not load code through `path` (None: it may, or we are not root).

    A fleet.toml names a module to import (`app`, `workdir`): one that another user owns or
    can change, in the directory root happens to run `fleet status` from, would run that
    user's code as root. Files named with --config or $FLEET_CONFIG are the operator's
    choice and are not second-guessed."""
    if os.geteuid() != 0:
        return None
    from fleet.files import others_who_can_write

    try:
        info = os.stat(path)
        directory = os.stat(path.absolute().parent)
    except OSError:
        return None
    if info.st_uid != 0:
        return f"it belongs to {others_who_can_write(info)}"
    who = others_who_can_write(info) or others_who_can_write(directory)
    return f"it can be changed by {who}" if who else None


def load_config(path: Path | None) -> FileConfig:
    if path is None:
        return FileConfig()
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path} is not valid TOML ({exc})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path} is not UTF-8 text (byte {exc.start})",
                          "save it as UTF-8") from None
    except RecursionError:
        raise ConfigError(f"{path} nests arrays or tables too deeply",
                          "a fleet.toml needs only a few levels") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {path} ({exc.strerror})") from None
    return parse_config(data, path)


def parse_config(data: dict[str, Any], path: Path | None = None) -> FileConfig:
    """Validate a parsed fleet.toml; raise ConfigError on the first problem."""
    config, problems = check_config(data, path)
    if problems:
        raise problems[0]
    return config


#: Checks for sections owned by other modules, as section -> "module:function": each gets
#: the parsed config and returns a list of problems. Imported only when the file has that
#: section, so a node reading a fleet.toml without [beat] never imports the scheduler.
SECTION_CHECKS: dict[str, str] = {"multi": "fleet.multictl.toml_section:check_multi",
                                  "beat": "fleet.engine.beat:check_file_section"}


def check_config(data: dict[str, Any], path: Path | None = None,
                 ) -> tuple[FileConfig, list[ConfigError]]:
    """Validate everything and collect every problem (for `fleet config check`)."""
    where = f"{path}: " if path else ""
    problems: list[ConfigError] = []
    config = FileConfig(path=path)
    for key in data:
        if key not in TOP_LEVEL_KEYS:
            problems.append(_unknown(where, key, TOP_LEVEL_KEYS, "top-level key"))
    for key in ("app", "workdir", "broker", "result_backend"):
        value = data.get(key)
        if value is not None and not isinstance(value, str):
            problems.append(ConfigError(f"{where}{key} = {value!r}: expected a string"))
        else:
            setattr(config, key, value)
    for key in ("settings", "multi", "beat"):
        try:
            setattr(config, key, _table(data, key, where))
        except ConfigError as exc:
            problems.append(exc)
    problems += _check_settings(config, where)
    for section, check in SECTION_CHECKS.items():
        if not getattr(config, section):
            continue
        module, _, function = check.partition(":")
        problems += getattr(importlib.import_module(module), function)(config)
    return config, problems


def _check_settings(config: FileConfig, where: str) -> list[ConfigError]:
    """Validate [settings] in place (Celery's names read as fleet's, or refused); the
    problems found (their settings are dropped)."""
    problems: list[ConfigError] = []
    config.settings, refused = celery_names.partition(config.settings, SETTINGS,
                                                      f"{where}[settings] ")
    if refused:
        problems.append(celery_names.refused_error(refused, f"{where}[settings] "))
    for name, value in list(config.settings.items()):
        try:
            if name not in SETTINGS:
                raise _unknown(where, f"settings.{name}", {f"settings.{s}" for s in SETTINGS},
                               "setting")
            config.settings[name] = validate(name, value, f"{where}[settings] ")
        except ConfigError as exc:
            problems.append(exc)
            del config.settings[name]
    return problems


def _table(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = data.get(key, {})
    if not isinstance(value, dict):
        raise ConfigError(f"{where}{key} must be a table ([{key}]), not {type(value).__name__}")
    return value


def _unknown(where: str, key: str, valid: set[str], what: str) -> ConfigError:
    hint = closest(key, valid)
    return ConfigError(f"{where}unknown {what} {key!r}",
                       f"did you mean {hint!r}?" if hint else
                       f"valid: {', '.join(sorted(valid))}")
