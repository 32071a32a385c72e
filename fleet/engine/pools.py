"""A node's pools, and which limits each can apply: `fleet worker --pool prefork|solo|threads`.

    prefork   tasks run in child processes forked by the main process (the default): every
              limit applies, a running task can be stopped.
    solo      tasks run one at a time on one thread of the node's main process: no fork (for
              debugging, a breakpoint in a task, and platforms without fork).
    threads   tasks run on --concurrency threads of the main process (I/O-bound tasks): no fork.

In solo and threads the main process's loop keeps its thread while tasks run on theirs, so
it goes on doing everything it does in prefork (heartbeats that keep the node's reservations,
remote control that answers while a task runs, ETA, rate limits, revokes, retries, events,
warm shutdown). What needs a child process cannot apply there, and is refused rather than
ignored (`check_limits`, `LIMITS`): hard and soft time limits (nothing can interrupt a thread
from outside), max tasks and max memory per child (no child to replace), and in solo anything
that would run more than one task at once. Refused as well: terminating a running task
(remote `terminate`), and the remote `time_limit` command. A cold shutdown cannot stop a
running task either: its message is settled at once as in prefork (acks-late tasks go back
to their queue, others are marked failed) and the thread is abandoned when the process exits,
worker_shutdown_grace seconds later at most.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fleet.engine.settings import SETTINGS
from fleet.operator_errors import ConfigError, UsageError

if TYPE_CHECKING:
    from fleet.engine.settings import Settings

PREFORK, SOLO, THREADS = "prefork", "solo", "threads"
POOLS = SETTINGS["worker_pool"].choices  #: (the setting's values are the pools)
#: The pools that run tasks in the node's main process (on threads), never forking.
IN_PROCESS = frozenset({SOLO, THREADS})


@dataclass(frozen=True)
class Limit:
    """A node option some pools cannot apply: its NodeOptions field, `fleet worker` flag and
    setting, the pools that apply it, why the others cannot, and the fix."""

    field: str
    flag: str
    setting: str
    pools: tuple[str, ...]
    why: str
    fix: str

    def violated_by(self, value: Any) -> bool:
        if self.field == "concurrency":  # solo runs one task at a time: 1 is fine
            return value not in (None, 1)
        return bool(value)


_NO_CHILD = "there is no child process to replace in the {pool} pool"
_PREFORK_FOR = "use --pool prefork for {}"
_SEVERAL = "use --pool threads or prefork to run several tasks at once"
LIMITS: tuple[Limit, ...] = (
    Limit("time_limit", "--time-limit", "task_time_limit", (PREFORK,),
          "a hard time limit kills the task's process, and in the {pool} pool the task runs "
          "in the node's main process", _PREFORK_FOR.format("hard time limits")),
    Limit("soft_time_limit", "--soft-time-limit", "task_soft_time_limit", (PREFORK,),
          "a soft time limit is a signal into the task's process, and in the {pool} pool the "
          "task runs on a thread that no signal can interrupt",
          _PREFORK_FOR.format("soft time limits")),
    Limit("max_tasks_per_child", "--max-tasks-per-child", "worker_max_tasks_per_child",
          (PREFORK,), _NO_CHILD, _PREFORK_FOR.format("child recycling")),
    Limit("max_memory_per_child", "--max-memory-per-child", "worker_max_memory_per_child",
          (PREFORK,), _NO_CHILD, _PREFORK_FOR.format("child recycling")),
    Limit("concurrency", "--concurrency", "worker_concurrency", (PREFORK, THREADS),
          "the solo pool runs one task at a time", _SEVERAL),
    Limit("autoscale", "--autoscale", "worker_autoscale", (PREFORK, THREADS),
          "the solo pool runs one task at a time", _SEVERAL),
)

_LAYERS = {"app": "in the app's settings", "file": "in fleet.toml",
           "env": "from FLEET_{NAME}", "cli": "after -- on the command line"}


def check_pool(name: str, given_as: str = "--pool") -> str:
    """`name` if it is a pool, else a UsageError (`given_as`: where it was given)."""
    if name in POOLS:
        return name
    raise UsageError(f"{given_as} {name!r} is not a pool", f"use one of {', '.join(POOLS)}")


def check_limits(pool: str, options: Any, conf: Settings,
                 from_command_line: Collection[str]) -> None:
    """Refuse what `pool` cannot apply: a UsageError (exit 2) naming the flag when it came
    from the command line (`from_command_line`: the NodeOptions fields it gave), else a
    ConfigError (exit 78) naming the setting and where it was set."""
    for limit in LIMITS:
        if pool in limit.pools:
            continue
        why = limit.why.format(pool=pool)
        value = getattr(options, limit.field, None)
        if limit.field in from_command_line and limit.violated_by(value):
            raise UsageError(f"{limit.flag} {_shown(value)} cannot apply to the {pool} pool: {why}",
                             f"{limit.fix}, or drop {limit.flag}")
        setting = conf[limit.setting]
        if limit.violated_by(setting):
            where = _LAYERS.get(conf.source(limit.setting), "")
            where = where.format(NAME=limit.setting.upper())
            raise ConfigError(f"{limit.setting} = {setting!r} ({where}) cannot apply to the "
                              f"{pool} pool: {why}",
                              f"{limit.fix}, or override it for this node: "
                              f"-- {limit.setting}={_unset(limit)}")


def _shown(value: Any) -> str:
    if isinstance(value, tuple):  # autoscale's (max, min)
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def _unset(limit: Limit) -> str:
    return "1" if limit.field == "concurrency" else "null"


def in_process(pool: str) -> bool:
    """Whether tasks of `pool` run in the node's main process (no child processes)."""
    return pool in IN_PROCESS
