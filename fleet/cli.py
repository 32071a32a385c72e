"""The `fleet` command: a thin click layer over the library. Parse, call, render, exit code.

Global options (-A/--app, -b/--broker, --result-backend, --workdir, --config, --no-color,
-q/--quiet) work both before and after the sub-command (`fleet -A proj worker` and
`fleet worker -A proj`); the one closest to the sub-command wins.

Every error is one line on stderr (`fleet: ...` with what to do) and a documented exit code
(see fleet.operator_errors): 2 for usage errors.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from fleet import __version__
from fleet.operator_errors import EXIT_FAILURE, EXIT_USAGE, FleetError, UsageError

if TYPE_CHECKING:
    from fleet.config import FileConfig
    from fleet.engine.app import Fleet


@dataclass
class CliContext:
    """Options shared by every command, filled from wherever the user typed them."""

    app: str | None = None
    broker: str | None = None
    result_backend: str | None = None
    workdir: str | None = None
    config: str | None = None
    no_color: bool = False
    quiet: bool = False
    _file: FileConfig | None = field(default=None, repr=False)
    _app: Fleet | None = field(default=None, repr=False)

    def file_config(self) -> FileConfig:
        if self._file is None:
            from fleet.config import find_config, load_config

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
        """The app from -A (or FLEET_APP, or fleet.toml), with file and CLI settings applied.

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
        cli_values = {"broker_url": self.broker, "result_backend": self.result_backend}
        app.conf.update({k: v for k, v in cli_values.items() if v}, layer="cli")
        app.close()  # settings changed: reopen connections on next use
        self._app = app
        return app

    def echo(self, text: str = "", err: bool = False) -> None:
        if not self.quiet or err:
            click.echo(text, err=err, color=None if not self.no_color else False)

    def style(self, text: str, **styles: Any) -> str:
        return text if self.no_color else click.style(text, **styles)


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and value is not False:
        setattr(ctx.ensure_object(CliContext), param.name, value)
    return value


_GLOBAL_OPTIONS = [
    (("-A", "--app"), {"metavar": "APP", "help": "The app: proj, proj.tasks, proj:app."}),
    (("-b", "--broker"), {"metavar": "URL", "help": "Broker URL (default: the embedded "
                          "SQLite broker in the state directory)."}),
    (("--result-backend",), {"metavar": "URL", "help": "Where results are stored (default: "
                             "the broker)."}),
    (("--workdir",), {"metavar": "DIR", "help": "Change to DIR first (the app is imported "
                      "from there)."}),
    (("--config",), {"metavar": "PATH", "help": "fleet.toml to read (default: ./fleet.toml, "
                     "or $FLEET_CONFIG)."}),
    (("--no-color",), {"is_flag": True, "help": "No colours in the output."}),
    (("-q", "--quiet"), {"is_flag": True, "help": "Print only what was asked for and errors."}),
]


def global_options(func: Any) -> Any:
    """Add the global options to a command (they also work on the `fleet` group itself)."""
    for names, extra in reversed(_GLOBAL_OPTIONS):
        func = click.option(*names, expose_value=False, callback=_remember, **extra)(func)
    return func


pass_cli = click.make_pass_decorator(CliContext, ensure=True)


class FleetGroup(click.Group):
    """Lists commands in the order they were added (most used first)."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)


@click.group(cls=FleetGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="fleet",
                      message="fleet %(version)s")
@global_options
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Run fleets of task workers: nodes, remote control, and an embedded task engine.

    \b
    Quick start (the embedded SQLite broker needs no server):
      fleet worker -A proj -c 2 -l info       run a node in the foreground
      fleet multi start 3 -A proj             or a fleet of detached nodes
      fleet call proj.tasks.add --args '[2, 2]'
      fleet result ID                          print its result
      fleet inspect ping; fleet multi status  who is up
    """
    ctx.ensure_object(CliContext)


# -- worker ------------------------------------------------------------------------------------

@cli.command(context_settings={"ignore_unknown_options": False})
@global_options
@click.option("-c", "--concurrency", type=click.IntRange(min=1), metavar="N",
              help="Child processes (default: worker_concurrency, else the CPU count).")
@click.option("-Q", "--queues", metavar="Q1,Q2", help="Queues to consume (default: default).")
@click.option("-n", "--hostname", metavar="NAME", default="fleet@%h", show_default=True,
              help="Node name; %h host, %n short host name, %d domain.")
@click.option("-l", "-L", "--loglevel", default="warning", show_default=True,
              help="debug, info, warning, error or critical.")
@click.option("-f", "--logfile", metavar="PATH",
              help="Log file (default: stderr); %n, %i, %I expand per process.")
@click.option("--pidfile", metavar="PATH", help="Write and lock a pid file.")
@click.option("--prefetch-multiplier", type=click.IntRange(min=1), metavar="N",
              help="Messages reserved per child (default 4); only for idle children once a "
                   "task has run longer than worker_prefetch_timeout (1 s).")
@click.option("--max-tasks-per-child", type=click.IntRange(min=1), metavar="N",
              help="Replace a child after N tasks.")
@click.option("--max-memory-per-child", type=click.IntRange(min=1), metavar="KIB",
              help="Replace a child once its resident memory exceeds KIB after a task.")
@click.option("--autoscale", metavar="MAX,MIN",
              help="Grow the pool up to MAX children while tasks wait, shrink it back to "
                   "MIN after worker_autoscale_keepalive idle seconds (default 30).")
@click.option("--time-limit", type=click.FloatRange(min=0, min_open=True), metavar="S",
              help="Hard time limit per task: its process is killed.")
@click.option("--soft-time-limit", type=click.FloatRange(min=0, min_open=True), metavar="S",
              help="Soft time limit: SoftTimeLimitExceeded is raised in the task.")
@click.option("-E", "--events", "send_events", is_flag=True,
              help="Send task events (see `fleet events`); worker events are always sent.")
@click.option("-B", "--beat", "embed_beat", is_flag=True,
              help="Also run the periodic-task scheduler in this node (see `fleet beat`).")
@click.option("--check", is_flag=True,
              help="Don't start a node: say whether the node named by -n is consuming "
                   "(exit 0), alive but not consuming (1), or unknown: broker down (75). "
                   "With --pidfile, the process must be alive too.")
@click.option("-j", "--json", "as_json", is_flag=True, help="With --check: print JSON.")
@click.option("--detach", is_flag=True,
              help="Run in the background: new session, stdio to the log file, a pid file "
              "(defaults as for fleet multi); waits until the node consumes, or says why not.")
@click.option("--uid", metavar="USER", help="With --detach: run as this user (name or id).")
@click.option("--gid", metavar="GROUP", help="With --detach: run as this group.")
@click.option("--umask", metavar="OCTAL", help="With --detach: umask (default 022).")
@click.argument("overrides", nargs=-1, metavar="[-- SETTING=VALUE ...]")
@pass_cli
def worker(cli_ctx: CliContext, loglevel: str, overrides: tuple[str, ...], check: bool,
           as_json: bool, detach: bool, uid: str | None, gid: str | None, umask: str | None,
           **node_args: Any) -> None:
    """Run one node: a main process and a prefork pool of children.

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
    from fleet.engine.log import parse_level

    level = parse_level(loglevel)
    if check:
        _check_worker(cli_ctx, overrides, node_args["hostname"], node_args["pidfile"], as_json)
    handshake = None
    if detach or uid or gid or umask:
        from fleet.detach import detach_worker

        cli_ctx.enter_workdir()  # relative paths are relative to where the node runs
        if cli_ctx.workdir:
            cli_ctx.workdir = os.getcwd()  # entered: loading the app must not chdir again
        detached = detach_worker(node_args["hostname"], node_args["logfile"],
                                 node_args["pidfile"], detach, uid, gid, umask)
        if detached is not None:
            handshake, node_args["logfile"], node_args["pidfile"] = detached
    try:
        _run_worker(cli_ctx, level, overrides, handshake, **node_args)
    except Exception as exc:
        if handshake is not None:  # tell the launcher why, in the node's own words
            handshake.failed(exc.one_line() if isinstance(exc, FleetError) else
                             f"{type(exc).__name__}: {exc}")
        raise


def _check_worker(cli_ctx: CliContext, overrides: tuple[str, ...], hostname: str,
                  pidfile: str | None, as_json: bool) -> None:
    """`fleet worker --check`: is the node named by -n consuming? (exits)"""
    from fleet.cli_health import run_check
    from fleet.nodenames import format_node, host_format

    app = cli_ctx.load_app()
    app.conf.update(parse_overrides(overrides), layer="cli", where="command line: ")
    nodename = host_format(hostname)
    shown_pidfile = format_node(os.path.expanduser(pidfile), nodename, 0) if pidfile else None
    sys.exit(run_check(cli_ctx, app, nodename, shown_pidfile, as_json))


def _run_worker(cli_ctx: CliContext, level: int, overrides: tuple[str, ...], handshake: Any,
                *, concurrency: int | None, queues: str | None, hostname: str,
                logfile: str | None, pidfile: str | None, prefetch_multiplier: int | None,
                max_tasks_per_child: int | None, max_memory_per_child: int | None,
                autoscale: str | None, time_limit: float | None, soft_time_limit: float | None,
                send_events: bool, embed_beat: bool) -> None:
    from fleet.engine.worker import Node, NodeOptions
    from fleet.nodenames import format_node, host_format

    app = cli_ctx.load_app()
    app.conf.update(parse_overrides(overrides), layer="cli", where="command line: ")
    nodename = host_format(hostname)
    app.import_includes()
    conf = app.conf
    options = NodeOptions(
        nodename=nodename,
        queues=split_list(queues) or [conf.task_default_queue],
        concurrency=concurrency or conf.worker_concurrency or os.cpu_count() or 1,
        loglevel=level,
        logfile=format_node(os.path.expanduser(logfile), nodename) if logfile else None,
        pidfile=format_node(os.path.expanduser(pidfile), nodename, 0) if pidfile else None,
        prefetch_multiplier=prefetch_multiplier or conf.worker_prefetch_multiplier,
        max_tasks_per_child=max_tasks_per_child or conf.worker_max_tasks_per_child,
        max_memory_per_child=max_memory_per_child or conf.worker_max_memory_per_child,
        time_limit=time_limit,
        soft_time_limit=soft_time_limit,
        send_events=send_events or conf.worker_send_task_events,
    )
    if autoscale or conf.worker_autoscale:
        from fleet.engine.autoscale import parse_autoscale

        options.autoscale = parse_autoscale(autoscale or conf.worker_autoscale)
    if handshake is not None:
        options.on_ready.append(lambda node: handshake.ready())
    node = Node(app, options)
    from fleet.engine import control, notify

    notify.attach(node)
    control.attach(node)
    if embed_beat:
        from fleet.engine import beat

        beat.attach(node)
    sys.exit(node.run())


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
    return [part.strip() for part in (text or "").split(",") if part.strip()]


# -- sending and results ---------------------------------------------------------------------

@cli.command()
@global_options
@click.argument("name")
@click.option("-a", "--args", "args_json", default="[]", metavar="JSON",
              help="Positional arguments as a JSON array.")
@click.option("-k", "--kwargs", "kwargs_json", default="{}", metavar="JSON",
              help="Keyword arguments as a JSON object.")
@click.option("--queue", metavar="Q", help="Queue (default: routed by name).")
@click.option("--countdown", type=float, metavar="S", help="Run no earlier than S seconds "
              "from now.")
@click.option("--eta", metavar="ISO", help="Run no earlier than this time (ISO 8601).")
@click.option("--expires", type=float, metavar="S", help="Revoke if not started within S "
              "seconds.")
@click.option("--priority", type=click.IntRange(0, 9), help="0-9, higher runs first.")
@pass_cli
def call(cli_ctx: CliContext, name: str, args_json: str, kwargs_json: str, queue: str | None,
         countdown: float | None, eta: str | None, expires: float | None,
         priority: int | None) -> None:
    """Send task NAME by name and print its id."""
    args = _json_option(args_json, "--args", list, "a JSON array, e.g. '[2, 2]'")
    kwargs = _json_option(kwargs_json, "--kwargs", dict, "a JSON object, e.g. '{\"x\": 1}'")
    options: dict[str, Any] = {"queue": queue, "countdown": countdown, "expires": expires,
                               "priority": priority}
    if eta:
        from datetime import datetime

        try:
            options["eta"] = datetime.fromisoformat(eta)
        except ValueError:
            raise UsageError(f"--eta {eta!r} is not an ISO 8601 time",
                             "e.g. 2026-11-22T18:30:00+00:00") from None
    app = cli_ctx.load_app(required=False)
    result = app.send_task(name, args, kwargs,
                           **{k: v for k, v in options.items() if v is not None})
    click.echo(result.id)


def _json_option(text: str, option: str, kind: type, expected: str) -> Any:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{option} is not valid JSON ({exc.msg})", f"give {expected}") from None
    if not isinstance(value, kind):
        raise UsageError(f"{option} must be {expected}")
    return value


@cli.command()
@global_options
@click.argument("task_id", metavar="ID")
@click.option("--traceback", "show_traceback", is_flag=True,
              help="Print the traceback of a failed task.")
@click.option("-t", "--timeout", type=float, default=10.0, show_default=True, metavar="S",
              help="Wait at most S seconds for the result (0: don't wait).")
@click.option("-j", "--json", "as_json", is_flag=True, help="Print the stored result as JSON.")
@pass_cli
def result(cli_ctx: CliContext, task_id: str, show_traceback: bool, timeout: float,
           as_json: bool) -> None:
    """Print the result of task ID (its return value as JSON).

    Exits 1 if the task failed (the error is printed; --traceback for the whole of it), and
    1 with its state if it is not done after --timeout.
    """
    from fleet.engine import states
    from fleet.exceptions import TimeoutError

    app = cli_ctx.load_app(required=False)
    backend = app.backend
    try:
        meta = backend.wait(task_id, timeout, 0.1) if timeout > 0 else backend.get_meta(task_id)
    except TimeoutError as exc:
        meta = backend.get_meta(task_id)
        if as_json:
            click.echo(json.dumps(meta, indent=2))
        raise FleetError(exc.message, exc.hint) from None
    if as_json:
        click.echo(json.dumps(meta, indent=2))
    elif meta["state"] == states.SUCCESS:
        click.echo(json.dumps(meta.get("result")))
    elif show_traceback and meta.get("traceback"):
        click.echo(meta["traceback"].rstrip(), err=True)
    elif meta["state"] in states.EXCEPTION_STATES:
        click.echo(f"{meta['state']}: {meta.get('exc_type')}: {meta.get('exc_message')}", err=True)
    else:
        click.echo(meta["state"])
    if meta["state"] != states.SUCCESS:
        sys.exit(EXIT_FAILURE)


# -- queues ------------------------------------------------------------------------------------

@cli.command()
@global_options
@click.option("-j", "--json", "as_json", is_flag=True, help="Print JSON.")
@pass_cli
def queues(cli_ctx: CliContext, as_json: bool) -> None:
    """List every known queue with its length.

    READY messages wait to be reserved; SCHEDULED wait for their ETA in the broker;
    RESERVED are held by nodes (prefetched, running, or waiting for an ETA); CONSUMERS is
    the number of live nodes consuming the queue. fleet.dead holds dead letters.
    """
    app = cli_ctx.load_app(required=False)
    stats = app.broker.queue_stats()
    rows = [{"queue": s.name, "ready": s.ready, "scheduled": s.scheduled,
             "reserved": s.reserved, "consumers": s.consumers} for s in stats]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        cli_ctx.echo("No queues yet: nothing was sent and no node is consuming.")
        return
    print_table(["QUEUE", "READY", "SCHEDULED", "RESERVED", "CONSUMERS"],
                [[r["queue"], r["ready"], r["scheduled"], r["reserved"], r["consumers"]]
                 for r in rows])


def print_table(headers: list[str], rows: list[list[Any]]) -> None:
    """Columns of numbers are right-aligned, everything else left-aligned."""
    numeric = [bool(rows) and all(isinstance(row[i], int | float) and not isinstance(row[i], bool)
                                  for row in rows) for i in range(len(headers))]
    table = [headers, *[[str(cell) for cell in row] for row in rows]]
    widths = [max(len(row[i]) for row in table) for i in range(len(headers))]
    for row in table:
        cells = [cell.rjust(width) if numeric[i] else cell.ljust(width)
                 for i, (cell, width) in enumerate(zip(row, widths, strict=True))]
        click.echo("  ".join(cells).rstrip())


@cli.command()
@global_options
@click.option("-Q", "--queues", "queue_names", metavar="Q1,Q2",
              help="Only these queues (default: every known queue).")
@click.option("-X", "--exclude-queues", metavar="Q1,Q2", help="Leave these queues alone.")
@click.option("-f", "--force", is_flag=True, help="Don't ask for confirmation.")
@pass_cli
def purge(cli_ctx: CliContext, queue_names: str | None, exclude_queues: str | None,
          force: bool) -> None:
    """Delete every waiting message (ready and scheduled) from queues.

    Messages already reserved by running nodes are not touched (stop the nodes, or revoke
    the tasks). Asks first unless -f is given.
    """
    app = cli_ctx.load_app(required=False)
    broker = app.broker
    from fleet.engine.transport.base import DEAD_LETTER_QUEUE

    known = {s.name: s for s in broker.queue_stats()}
    wanted = split_list(queue_names) or [name for name in known if name != DEAD_LETTER_QUEUE]
    excluded = set(split_list(exclude_queues))
    targets = [name for name in wanted if name not in excluded]
    if not targets:
        cli_ctx.echo("No queues to purge.")
        return
    if not force:
        waiting = sum(known[n].ready + known[n].scheduled for n in targets if n in known)
        click.echo(cli_ctx.style("WARNING:", fg="red", bold=True) +
                   f" this removes every waiting message ({waiting} now) from: "
                   f"{', '.join(targets)}. There is no undo.", err=True)
        click.confirm("Purge these queues? (-f skips this question)", abort=True, err=True)
    removed = broker.purge(targets)
    held = sum(known[n].reserved for n in targets if n in known)
    note = f" ({held} reserved by running nodes were left alone)" if held else ""
    click.echo(f"Purged {removed} message{'s' if removed != 1 else ''} from "
               f"{len(targets)} queue{'s' if len(targets) != 1 else ''}{note}.")


# -- report ------------------------------------------------------------------------------------

@cli.command()
@global_options
@click.option("-j", "--json", "as_json", is_flag=True, help="Print JSON.")
@pass_cli
def report(cli_ctx: CliContext, as_json: bool) -> None:
    """Versions, platform and effective settings (secrets masked), for bug reports."""
    from fleet.report import build_report, format_report

    app = cli_ctx.load_app(required=False)
    data = build_report(app, cli_ctx.app_spec())
    click.echo(json.dumps(data, indent=2, default=str) if as_json else format_report(data))


# -- commands that live in their own modules ---------------------------------------------------

#: Each area keeps its commands in a module of its own (fleet/cli_<area>.py) exposing
#: `register(cli)`; add one line here per module.
COMMAND_MODULES: list[str] = [
    "fleet.cli_config",
    "fleet.cli_remote",
    "fleet.cli_beat",
    "fleet.cli_multi",
    "fleet.cli_dashboard",
]


def _register_commands() -> None:
    import importlib

    for name in COMMAND_MODULES:
        importlib.import_module(name).register(cli)


_register_commands()


# -- entry point -------------------------------------------------------------------------------

def _unexpected(exc: Exception) -> int:
    """An error nobody turned into a FleetError: a broker failing mid-command, or a bug."""
    from fleet.operator_errors import EXIT_BROKER, EXIT_SOFTWARE

    if os.environ.get("FLEET_DEBUG"):
        raise exc
    module = type(exc).__module__
    text = " ".join(str(exc).split()) or type(exc).__name__
    if module.startswith(("redis", "sqlite3")) or isinstance(exc, ConnectionError):
        click.echo(f"fleet: broker error: {type(exc).__name__}: {text}; check that the broker "
                   "is reachable and try again", err=True)
        return EXIT_BROKER
    click.echo(f"fleet: internal error: {type(exc).__name__}: {text}; this is a bug in fleet: "
               "run again with FLEET_DEBUG=1 for the traceback and report it", err=True)
    return EXIT_SOFTWARE


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; turn every error into one line on stderr and its exit code."""
    args = sys.argv[1:] if argv is None else argv
    try:
        code = cli.main(args=args, prog_name="fleet", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        code = EXIT_FAILURE
    except click.UsageError as exc:
        command = exc.ctx.command_path if exc.ctx else "fleet"
        click.echo(f"{command}: {exc.format_message()} (see `{command} --help`)", err=True)
        code = EXIT_USAGE
    except click.ClickException as exc:
        click.echo(f"fleet: {exc.format_message()}", err=True)
        code = exc.exit_code
    except FleetError as exc:
        click.echo(f"fleet: {exc.one_line()}", err=True)
        code = exc.exit_code
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        code = EXIT_FAILURE
    except Exception as exc:
        code = _unexpected(exc)
    sys.exit(code if isinstance(code, int) else 0)
