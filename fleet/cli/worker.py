"""`fleet worker`: run one node (fleet.worker_setup does it), or `--check` on one.

Its options are declared once, in fleet.worker_setup.options; this module only turns them
into click options and what click read into `WorkerOptions`.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import click

from fleet.cli.context import CliContext, click_option, global_options, pass_cli
from fleet.worker_setup.options import WORKER_OPTIONS, WorkerOptions


def worker_options(func: Any) -> Any:
    """Add every option of the worker's table, in its order."""
    for option in reversed(WORKER_OPTIONS):
        func = click_option(option)(func)
    return func


@click.command(context_settings={"ignore_unknown_options": False})
@global_options
@worker_options
@click.argument("overrides", nargs=-1, metavar="[-- SETTING=VALUE ...]")
@pass_cli
def worker(cli_ctx: CliContext, overrides: tuple[str, ...], check: bool, as_json: bool,
           **values: Any) -> None:
    """Run one node: a main process and its pool (prefork children by default).

    \b
    Pools (-P/--pool, or the worker_pool setting):
      prefork  tasks run in child processes: every limit applies, and a running
               task can be stopped (hard time limit, terminate, cold shutdown).
      solo     tasks run one at a time on a thread of the main process; no fork.
      threads  tasks run on -c threads of the main process (I/O-bound tasks).
    In solo and threads the main process goes on heartbeating and answering
    remote control while a task runs; what needs a child process is refused
    with an error: --time-limit, --soft-time-limit, --max-tasks-per-child,
    --max-memory-per-child (and their settings), remote terminate and
    time_limit; in solo also -c above 1 and --autoscale. A task's own time
    limits are not applied there (the log says so). A cold shutdown settles a
    running task at once and abandons its thread when the process exits.

    \b
    Signals: TERM warm shutdown (running tasks finish), INT warm then cold on a second
    INT, QUIT cold shutdown, HUP restart in place, USR1 stack dump to the log,
    TTIN/TTOU grow/shrink the pool by one (within the --autoscale range).

    \b
    Health check (for probes and HEALTHCHECK): fleet worker -A proj -n w1@%h --check
    exits 0 if the node consumes, 1 if it is alive but not consuming, 75 if the broker
    cannot be reached.

    Settings can be given after `--` as SETTING=VALUE (VALUE is JSON, else a string):
    fleet worker -A proj -- task_acks_late=true worker_heartbeat_interval=1
    """
    from fleet.worker_setup.run import run_worker

    options = WorkerOptions(app=cli_ctx, overrides=overrides, **values)
    if check:
        from fleet.engine.log import parse_level

        parse_level(options.loglevel)  # a bad level is a usage error in every mode
        _check_worker(cli_ctx, options, as_json)
    sys.exit(run_worker(options))


def _check_worker(cli_ctx: CliContext, options: WorkerOptions, as_json: bool) -> None:
    """`fleet worker --check`: is the node named by -n consuming? (exits)"""
    from fleet.app_options import parse_overrides
    from fleet.cli.health import run_check
    from fleet.nodenames import format_node, host_format

    app = cli_ctx.load_app()
    app.conf.update(parse_overrides(options.overrides), layer="cli", where="command line: ")
    nodename = host_format(options.hostname)
    pidfile = options.pidfile
    shown_pidfile = format_node(os.path.expanduser(pidfile), nodename, 0) if pidfile else None
    sys.exit(run_check(cli_ctx, app, nodename, shown_pidfile, as_json))


COMMANDS = (worker,)
