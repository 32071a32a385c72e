"""The `[multi]` section of fleet.toml: a fleet described once, started with `fleet multi start`.

The section is translated into the very command line a user would type, then expanded by
fleet.multi like any other, so a node started from the file and one started by hand are the
same node, with the same defaults and the same checks::

    [multi]                          # options for every node
    concurrency = 2
    loglevel = "info"
    pidfile = "/run/fleet/%n.pid"
    user = "fleet"                   # --uid

    [multi.groups.images]            # images1, images2, images3
    nodes = 3
    queues = ["images", "video"]

    [multi.groups.data]              # one node named data
    nodes = ["data"]
    queues = "data"
    loglevel = "debug"

A plain `nodes = 4` directly under `[multi]` makes `w1`..`w4` (`range_prefix` changes `w`).
Every node is given `--config` with the file's absolute path, so it reads the same app, broker
and settings wherever it runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fleet.app_options import BOUNDS, COUNT, FLAG, NAMES, SECONDS, TEXT
from fleet.config_file import FileConfig
from fleet.multi import MAX_NODES
from fleet.operator_errors import ConfigError, closest
from fleet.worker_setup.options import multi_options


@dataclass(frozen=True)
class Key:
    """A key of [multi] or of a group: the option it becomes and the value it accepts."""

    option: str  #: the long option it becomes (`--queues`)
    kind: str  #: the option's kind (fleet.app_options): a value of that kind, in TOML
    per_node: bool = True  #: allowed in a group (per-node), not only for the whole fleet
    choices: tuple[str, ...] = ()  #: the only values it takes (`pool`), or () for any


#: Worker options a fleet.toml may set, by key: those multi passes on to nodes (the worker's
#: option table says which). app/broker/result_backend/config come from the top of the file
#: instead (every node gets --config).
_FROM_FILE_ELSEWHERE = {"--app", "--broker", "--result-backend", "--config"}
WORKER_KEYS: dict[str, Key] = {
    option.name[2:].replace("-", "_"): Key(option.name, option.kind, choices=option.choices)
    for option in multi_options() if option.name not in _FROM_FILE_ELSEWHERE
}
#: Friendlier spellings for the process owner.
WORKER_KEYS["user"] = Key("--uid", TEXT)
WORKER_KEYS["group"] = Key("--gid", TEXT)
#: Keys for multi itself, valid only directly under [multi].
MULTI_KEYS: dict[str, Key] = {
    "hostname": Key("--hostname", TEXT, per_node=False),
    "range_prefix": Key("--range-prefix", TEXT, per_node=False),
    "workdir": Key("--workdir", TEXT, per_node=False),
    "executable": Key("--executable", TEXT, per_node=False),
    "timeout": Key("--timeout", SECONDS, per_node=False),
}
NODES_KEY = "nodes"
GROUPS_KEY = "groups"


def multi_argv(config: FileConfig) -> list[str]:
    """The `fleet multi` arguments [multi] stands for (nodes, then options); ConfigError if the
    section is missing, empty or wrong."""
    problems = check_multi(config)
    if problems:
        raise problems[0]
    section = config.multi
    if not section:
        where = f"{config.path}" if config.path else "fleet.toml"
        raise ConfigError(f"{where} has no [multi] section, so there is no fleet to start",
                          "give nodes (fleet multi start 3) or add [multi] with nodes = 3")
    names, node_args = _nodes(section)
    argv = list(names)
    for key, value in section.items():
        if key not in (NODES_KEY, GROUPS_KEY):
            argv += _option(_key(key), value)
    argv += node_args
    if config.path is not None:
        argv.append(f"--config={config.path.resolve()}")
    return argv


def _nodes(section: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Node names (or one count) and the per-node options of every group."""
    groups: dict[str, dict[str, Any]] = section.get(GROUPS_KEY, {})
    count = section.get(NODES_KEY)
    if not groups and isinstance(count, int):
        return [str(count)], []  # count form: w1..wN, --range-prefix applies
    prefix = section.get("range_prefix", "w")
    names = _group_names(prefix, count) if count is not None else []
    node_args: list[str] = []
    for group, table in groups.items():
        members = _group_names(group, table[NODES_KEY])
        names += members
        selector = ",".join(members)
        for key, value in table.items():
            if key != NODES_KEY:
                node_args += _option(_key(key), value, selector)
    return names, node_args


def _group_names(prefix: str, nodes: int | list[str]) -> list[str]:
    if isinstance(nodes, int):
        return [f"{prefix}{number}" for number in range(1, nodes + 1)]
    return list(nodes)


def _key(key: str) -> Key:
    return WORKER_KEYS.get(key) or MULTI_KEYS[key]


def _option(key: Key, value: Any, selector: str | None = None) -> list[str]:
    spelling = f"{key.option}:{selector}" if selector else key.option
    if key.kind == FLAG:
        return [spelling] if value else []
    if key.kind == NAMES and isinstance(value, list):
        value = ",".join(value)
    elif key.kind == BOUNDS and isinstance(value, list):
        value = ",".join(str(part) for part in value)
    return [f"{spelling}={value}"]


# -- checking ------------------------------------------------------------------------------------


def check_multi(config: FileConfig) -> list[ConfigError]:
    """Every problem in [multi], one ConfigError each (file, key, what was expected)."""
    section = config.multi
    if not section:
        return []
    where = f"{config.path}: " if config.path else ""
    problems: list[ConfigError] = []
    valid_top = {*WORKER_KEYS, *MULTI_KEYS, NODES_KEY, GROUPS_KEY}
    for key, value in section.items():
        if key == GROUPS_KEY:
            problems += _check_groups(value, where)
        elif key == NODES_KEY:
            problems += _check_nodes(value, f"{where}multi.nodes")
        elif key not in valid_top:
            problems.append(_unknown(f"{where}multi.", key, valid_top))
        else:
            problems += _check_value(_key(key), value, f"{where}multi.{key}")
    if NODES_KEY not in section and not section.get(GROUPS_KEY):
        problems.append(ConfigError(f"{where}[multi] names no nodes",
                                    "add nodes = 3 (or names: nodes = [\"web\", \"img\"]) "
                                    "or a [multi.groups.NAME] table with nodes"))
    return problems


def _check_groups(groups: Any, where: str) -> list[ConfigError]:
    if not isinstance(groups, dict):
        return [ConfigError(f"{where}multi.groups must be tables ([multi.groups.NAME])")]
    problems: list[ConfigError] = []
    valid = {*WORKER_KEYS, NODES_KEY}
    for group, table in groups.items():
        at = f"{where}multi.groups.{group}"
        if not isinstance(table, dict):
            problems.append(ConfigError(f"{at} must be a table ([multi.groups.{group}])"))
            continue
        if NODES_KEY not in table:
            problems.append(ConfigError(f"{at} has no nodes",
                                        "add nodes = 2 (or a list of node names)"))
        for key, value in table.items():
            if key == NODES_KEY:
                problems += _check_nodes(value, f"{at}.nodes")
            elif key in MULTI_KEYS:
                problems.append(ConfigError(f"{at}.{key}: applies to the whole fleet",
                                            "move it to [multi]"))
            elif key not in valid:
                problems.append(_unknown(f"{at}.", key, valid))
            else:
                problems += _check_value(WORKER_KEYS[key], value, f"{at}.{key}")
    return problems


def _check_nodes(value: Any, at: str) -> list[ConfigError]:
    if isinstance(value, bool) or not isinstance(value, int | list):
        return [ConfigError(f"{at} = {value!r}: expected a node count or a list of names")]
    if isinstance(value, int) and value < 1:
        return [ConfigError(f"{at} = {value}: at least one node is needed")]
    if (len(value) if isinstance(value, list) else value) > MAX_NODES:
        return [ConfigError(f"{at}: more than {MAX_NODES} nodes",
                            f"give at most {MAX_NODES} (each is a process group on this host)")]
    if isinstance(value, list) and (not value or not all(
            isinstance(name, str) and name for name in value)):
        return [ConfigError(f"{at} = {value!r}: expected a non-empty list of node names")]
    return []


_CHECKS: dict[str, tuple[Callable[[Any], bool], str]] = {
    COUNT: (lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= 1,
            "a whole number >= 1"),
    SECONDS: (lambda v: isinstance(v, int | float) and not isinstance(v, bool) and v > 0,
              "a number of seconds > 0"),
    TEXT: (lambda v: isinstance(v, str) and bool(v), "a non-empty string"),
    NAMES: (lambda v: (isinstance(v, str) and bool(v)) or (
        isinstance(v, list) and bool(v) and all(isinstance(i, str) and i for i in v)),
        "a string or a list of strings"),
    FLAG: (lambda v: isinstance(v, bool), "true or false"),
    BOUNDS: (lambda v: (isinstance(v, str) and bool(v)) or (
        isinstance(v, list) and len(v) == 2 and all(isinstance(i, int) for i in v)),
        "\"MAX,MIN\" or [MAX, MIN]"),
}


def _check_value(key: Key, value: Any, at: str) -> list[ConfigError]:
    accepts, expected = _CHECKS[key.kind]
    if key.choices:
        accepts, expected = key.choices.__contains__, f"one of {', '.join(key.choices)}"
    if accepts(value):
        return []
    return [ConfigError(f"{at} = {value!r}: expected {expected}")]


def _unknown(prefix: str, key: str, valid: set[str]) -> ConfigError:
    hint = closest(key, valid)
    return ConfigError(f"{prefix}{key}: unknown key",
                       f"did you mean {hint!r}?" if hint else f"valid: {', '.join(sorted(valid))}")
