"""The options of `fleet worker`, declared once: the table drives click (`fleet worker --help`
lists them in this order), `fleet multi`'s node options, fleet.toml's [multi] keys, and the
translation of a node's recorded command line back into `WorkerOptions`.

`WorkerOptions` is what running a node takes (fleet.worker_setup.run.run_worker): every option
of the table but the two of `--check` (that mode only reports, see fleet/cli/health.py), the
app options (fleet.app_options), and the `-- SETTING=VALUE` overrides.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from fleet.app_options import APP_OPTIONS, BOUNDS, COUNT, FLAG, NAMES, SECONDS, AppOptions, Option

DEFAULT_HOSTNAME = "fleet@%h"
#: `--pool`'s values: fleet.engine.pools.POOLS, spelt out here so that the CLI starts without
#: importing the engine (a unit test keeps the two equal).
POOLS = ("prefork", "solo", "threads")
DEFAULT_LOGLEVEL = "warning"

WORKER_OPTIONS: tuple[Option, ...] = (
    Option("concurrency", ("-c", "--concurrency"), "Child processes, or threads with --pool "
           "threads (default: worker_concurrency, else the CPU count; 1 with --pool solo).",
           COUNT, "N"),
    Option("pool", ("-P", "--pool"), "Where tasks run: prefork (child processes; the "
           "default, or worker_pool), solo (one at a time on a thread of the main process) or "
           "threads (-c threads of the main process, for I/O-bound tasks). See Pools above.",
           choices=POOLS),
    Option("queues", ("-Q", "--queues"), "Queues to consume (default: default).", NAMES,
           "Q1,Q2"),
    Option("hostname", ("-n", "--hostname"), "Node name; %h host, %n short host name, "
           "%d domain.", metavar="NAME", default=DEFAULT_HOSTNAME, show_default=True,
           multi=False),  # multi names every node itself
    Option("loglevel", ("-l", "-L", "--loglevel"), "debug, info, warning, error or critical.",
           default=DEFAULT_LOGLEVEL, show_default=True),
    Option("logfile", ("-f", "--logfile"), "Log file (default: stderr); %n, %i, %I expand per "
           "process.", metavar="PATH", node_expands=True),
    Option("pidfile", ("--pidfile",), "Write and lock a pid file.", metavar="PATH",
           node_expands=True),
    Option("prefetch_multiplier", ("--prefetch-multiplier",), "Messages reserved per child "
           "(default 4); only for idle children once a task has run longer than "
           "worker_prefetch_timeout (1 s).", COUNT, "N"),
    Option("max_tasks_per_child", ("--max-tasks-per-child",), "Replace a child after N tasks.",
           COUNT, "N"),
    Option("max_memory_per_child", ("--max-memory-per-child",), "Replace a child once its "
           "resident memory exceeds KIB after a task.", COUNT, "KIB"),
    Option("autoscale", ("--autoscale",), "Grow the pool up to MAX children while tasks wait, "
           "shrink it back to MIN after worker_autoscale_keepalive idle seconds (default 30).",
           BOUNDS, "MAX,MIN"),
    Option("time_limit", ("--time-limit",), "Hard time limit per task: its process is killed.",
           SECONDS, "S"),
    Option("soft_time_limit", ("--soft-time-limit",), "Soft time limit: SoftTimeLimitExceeded "
           "is raised in the task.", SECONDS, "S"),
    Option("send_events", ("-E", "--events"), "Send task events (see `fleet events`); worker "
           "events are always sent.", FLAG),
    Option("embed_beat", ("-B", "--beat"), "Also run the periodic-task scheduler in this node "
           "(see `fleet beat`).", FLAG),
    Option("check", ("--check",), "Don't start a node: say whether the node named by -n is "
           "consuming (exit 0), alive but not consuming (1), or unknown: broker down (75). "
           "With --pidfile, the process must be alive too.", FLAG, multi=False),
    Option("as_json", ("-j", "--json"), "With --check: print JSON.", FLAG, multi=False),
    Option("detach", ("--detach",), "Run in the background: new session, stdio to the log "
           "file, a pid file (defaults as for fleet multi); waits until the node consumes, or "
           "says why not.", FLAG, multi=False),  # multi adds it to every node itself
    Option("uid", ("--uid",), "With --detach: run as this user (name or id).", metavar="USER"),
    Option("gid", ("--gid",), "With --detach: run as this group.", metavar="GROUP"),
    Option("umask", ("--umask",), "With --detach: umask (default 022).", metavar="OCTAL"),
)

#: The options of `fleet worker --check`, which reports on a node instead of running one.
CHECK_OPTIONS = frozenset({"check", "as_json"})


@dataclass
class WorkerOptions:
    """Everything running a node takes, as typed values (None: not given)."""

    app: AppOptions = field(default_factory=AppOptions)
    concurrency: int | None = None
    pool: str | None = None
    queues: str | None = None
    hostname: str = DEFAULT_HOSTNAME
    loglevel: str = DEFAULT_LOGLEVEL
    logfile: str | None = None
    pidfile: str | None = None
    prefetch_multiplier: int | None = None
    max_tasks_per_child: int | None = None
    max_memory_per_child: int | None = None
    autoscale: str | None = None
    time_limit: float | None = None
    soft_time_limit: float | None = None
    send_events: bool = False
    embed_beat: bool = False
    detach: bool = False
    uid: str | None = None
    gid: str | None = None
    umask: str | None = None
    overrides: tuple[str, ...] = ()  #: `-- SETTING=VALUE ...`


def multi_options() -> tuple[Option, ...]:
    """The options `fleet multi` passes on to each node, in the order a node's argv lists
    them: the app options, then the worker's own."""
    return tuple(option for option in (*APP_OPTIONS, *WORKER_OPTIONS) if option.multi)


def options_from_argv(args: list[str]) -> WorkerOptions | None:
    """The `WorkerOptions` a `worker ...` command line (without the program) stands for, read
    as `fleet worker` reads it; None for anything this reading does not take (another command,
    an unknown option, a value `fleet worker` would refuse, `--check`): such a command line
    is for `fleet worker` itself to run, and to explain."""
    if not args or args[0] != "worker":
        return None
    cut = args.index("--") if "--" in args else len(args)
    by_flag = {flag: option for option in (*APP_OPTIONS, *WORKER_OPTIONS)
               for flag in option.flags}
    values: dict[str, object] = {}
    pending = deque(args[1:cut])
    while pending:
        spelling, has_value, text = pending.popleft().partition("=")
        option = by_flag.get(spelling)
        if option is None or option.dest in CHECK_OPTIONS:
            return None
        if has_value and not (option.takes_value and spelling.startswith("--")):
            return None  # (click reads `-A=x` as the value "=x": leave that to it)
        if not option.takes_value:
            values[option.dest] = True
            continue
        if not has_value:
            if not pending:
                return None
            text = pending.popleft()
        try:
            values[option.dest] = option.convert(text)
        except ValueError:
            return None
    app = AppOptions(**{option.dest: values.pop(option.dest) for option in APP_OPTIONS
                        if option.dest in values})
    return WorkerOptions(app=app, overrides=tuple(args[cut + 1:]), **values)

