"""Running a node in this process: from `WorkerOptions` to a running Node and its exit code.

`fleet worker` calls `run_worker` once click has read its command line; `fleet multi`'s
launcher calls `run_worker_reporting` in a forked process, with the options it read back from
the node's recorded command line (fleet.worker_setup.options), so starting ten nodes costs
ten forks instead of ten interpreters importing fleet.
"""

from __future__ import annotations

import os
import sys
import traceback
from dataclasses import replace
from typing import TYPE_CHECKING

from fleet.app_options import parse_overrides, split_list
from fleet.operator_errors import EXIT_FAILURE, EXIT_SOFTWARE, FleetError, describe_failure
from fleet.worker_setup.options import WorkerOptions

if TYPE_CHECKING:
    from fleet.engine.app import Fleet
    from fleet.engine.worker import NodeOptions
    from fleet.worker_setup.handshake import Handshake


def run_worker(options: WorkerOptions) -> int:
    """Detach if asked, load the app, build the node and run it; returns its exit code.

    Errors are raised (`FleetError`s for the operator); a detached node first tells its
    launcher why it could not start, in its own words.
    """
    from fleet.engine.log import parse_level

    level = parse_level(options.loglevel)
    handshake = None
    if options.detach or options.uid or options.gid or options.umask:
        options, handshake = _detach(options)
    try:
        return _run_node(options, level, handshake)
    except Exception as exc:
        if handshake is not None:  # tell the launcher why, in the node's own words
            handshake.failed(exc.one_line() if isinstance(exc, FleetError) else
                             f"{type(exc).__name__}: {exc}")
        raise


def run_worker_reporting(options: WorkerOptions) -> int:
    """`run_worker` with no command line around it (fleet multi's forked launcher): an error
    ends it as it ends `fleet worker`, with one line on stderr and the same exit code."""
    try:
        return run_worker(options)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return EXIT_FAILURE
    except Exception as exc:
        if os.environ.get("FLEET_DEBUG") and not isinstance(exc, FleetError):
            traceback.print_exc()
            return EXIT_SOFTWARE
        line, code = describe_failure(exc)
        print(f"fleet: {line}", file=sys.stderr)
        return code


def _detach(options: WorkerOptions) -> tuple[WorkerOptions, Handshake | None]:
    """Detach (--detach) or apply --uid/--gid/--umask in place; the options the node runs
    with (its log and pid files filled in) and, when detached, its readiness handshake."""
    from fleet.worker_setup.detach import detach_worker

    app = options.app
    app.enter_workdir()  # relative paths are relative to where the node runs
    if app.workdir:
        app.workdir = os.getcwd()  # entered: loading the app must not chdir again
    detached = detach_worker(options.hostname, options.logfile, options.pidfile,
                             options.detach, options.uid, options.gid, options.umask)
    if detached is None:
        return options, None
    handshake, logfile, pidfile = detached
    return replace(options, logfile=logfile, pidfile=pidfile), handshake


def _run_node(options: WorkerOptions, level: int, handshake: Handshake | None) -> int:
    from fleet.engine import control, sd_notify
    from fleet.engine.worker import Node
    from fleet.nodenames import host_format

    app = options.app.load_app()
    app.conf.update(parse_overrides(options.overrides), layer="cli", where="command line: ")
    nodename = host_format(options.hostname)
    app.import_includes()
    node_options = build_node_options(options, app, nodename, level)
    if handshake is not None:
        node_options.on_ready.append(lambda node: handshake.ready())
    node = Node(app, node_options)
    sd_notify.attach(node)
    control.attach(node)
    if options.embed_beat:
        from fleet.engine import beat

        beat.attach(node)
    return node.run()


def build_node_options(options: WorkerOptions, app: Fleet, nodename: str,
                       level: int) -> NodeOptions:
    """The engine's NodeOptions: the given options, else the app's settings, else defaults.

    What the pool cannot apply (a time limit in the threads pool, ...) is refused here: a
    UsageError naming the flag, or a ConfigError naming the setting (fleet.engine.pools).
    """
    from fleet.engine.pools import SOLO, check_limits, check_pool
    from fleet.engine.worker import NodeOptions
    from fleet.nodenames import format_node

    conf = app.conf
    pool = check_pool(options.pool) if options.pool else conf.worker_pool
    logfile, pidfile = options.logfile, options.pidfile
    node_options = NodeOptions(
        nodename=nodename,
        queues=split_list(options.queues) or [conf.task_default_queue],
        concurrency=options.concurrency or conf.worker_concurrency or
        (1 if pool == SOLO else os.cpu_count() or 1),
        loglevel=level,
        logfile=format_node(os.path.expanduser(logfile), nodename) if logfile else None,
        pidfile=format_node(os.path.expanduser(pidfile), nodename, 0) if pidfile else None,
        prefetch_multiplier=options.prefetch_multiplier or conf.worker_prefetch_multiplier,
        max_tasks_per_child=options.max_tasks_per_child or conf.worker_max_tasks_per_child,
        max_memory_per_child=options.max_memory_per_child or conf.worker_max_memory_per_child,
        time_limit=options.time_limit,
        soft_time_limit=options.soft_time_limit,
        send_events=options.send_events or conf.worker_send_task_events,
        pool=pool,
    )
    if options.autoscale or conf.worker_autoscale:
        from fleet.engine.autoscale import parse_autoscale

        node_options.autoscale = parse_autoscale(options.autoscale or conf.worker_autoscale)
    given = [name for name, value in vars(options).items() if value not in (None, False)]
    check_limits(pool, node_options, conf, given)
    return node_options
