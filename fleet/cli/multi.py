"""`fleet multi`: the CLI over fleet.multi (node specs) and fleet.multictl.control (the rest).

multi's arguments follow celery multi's grammar (`-Q:1-3 images`, `--opt:sel=value`, `--`),
which click cannot express, so click hands them over untouched and fleet.multi parses them.
"""

from __future__ import annotations

import json
import shlex
import sys
from typing import Any

import click

from fleet.app_options import AppOptions
from fleet.cli.context import CliContext, pass_cli, print_table
from fleet.operator_errors import EXIT_FAILURE, EXIT_NOT_RUNNING, FleetError, UsageError, closest

#: The sub-commands, in the order --help lists them (handlers: _HANDLERS at the end).
SUBCOMMANDS = ("start", "stop", "stopwait", "restart", "reload", "kill", "status", "show",
               "get", "names", "expand")

HELP = """Run a fleet of detached nodes on this host; they are verified, remembered and
stopped safely.

\b
Commands:
  start NODES [OPTS]   start every node detached, in parallel; OK only once it consumes,
                       else FAILED with the reason and its last log lines (no NODES:
                       the fleet of fleet.toml's [multi], else the remembered nodes)
  stop [NODES]         send TERM (or -SIGNAME, -N, --signal NAME) and return
  stopwait [NODES]     the same, then wait until every node exited, showing which are
                       still stopping; --timeout S: SIGKILL the process group after S s
  restart [NODES]      stopwait + start with the remembered arguments; --rolling: one
                       node at a time, the next once the previous one consumes again
  reload [NODES]       HUP: a warm restart in place (same pid, new code)
  kill [NODES]         SIGKILL each node's process group, remove its pid file
  status [NODES]       node, pid, state, consuming (a fresh heartbeat at the broker),
                       uptime, memory, children, log file (--json); exit 0 when all
                       run and consume, 3 otherwise
  show [NODES]         each node's full command line
  get NODE             one node's command, ready to paste into a shell: cd to its
                       directory, env with multi's FLEET_* and PYTHONPATH, its
                       interpreter and arguments (it runs the node as start does);
                       passwords are masked unless --reveal-secrets
  names [NODES]        the node names
  expand TEMPLATE [NODES]   TEMPLATE expanded once per node
\b
NODES at start: a count (`3`: w1@HOST..w3@HOST, --range-prefix changes w) or names
(`web img`, `web@%h`; --prefix P, -n/--hostname H for the host part).
\b
NODES on every other command select remembered nodes, in the order they were first
started (as `names` lists them): a number is a position (`2`), never a count; `1-3`
a range of positions; `w1` or `w1@host` a name; `1-3,web` a list. No NODES: every
remembered node. A selector that matches nothing is an error, and so is a worker
option (multi remembers each node's).
\b
--spec (show, get, names, expand): preview a fleet instead: NODES and options are
read as start reads them, and nothing is started (no NODES: fleet.toml's [multi]).
  fleet multi names --spec 3            w1@HOST w2@HOST w3@HOST
  fleet multi show --spec 3 -A proj -c 2
  fleet multi get --spec 2 3 -A proj    node 2 of `start 3 -A proj`
  fleet multi expand --spec %n.log web img
\b
Per-node options: -Q:1-3 images,video   --concurrency:web=4   -l:img debug
(a selector is a position, a range, a name, or a comma list of those; one that matches
no node is an error). Everything after -- goes to every node as is.
\b
%-expansions everywhere: %p full name, %n short name, %h host, %d domain,
%i pool index (0 in the main process), %I "-index" in a child, empty in the main, %% a %.
\b
Files: as root --pidfile=/run/fleet/%n.pid --logfile=/var/log/fleet/%n%I.log;
otherwise $STATE/run/%n.pid and $STATE/log/%n%I.log, where $STATE is $FLEET_STATE_DIR or
$XDG_STATE_HOME/fleet (~/.local/state/fleet). multi remembers the nodes it started in
$STATE/multi.toml (as root /var/lib/fleet/multi.toml).
\b
Other multi options: --workdir DIR (where nodes run; default: here), --executable PY,
--timeout S (start: wait for readiness, default 60; stopwait/restart: before SIGKILL),
-q/--quiet, --no-color.
\b
Example:
  fleet multi start 10 -A proj -l info -Q:1-3 images,video -Q:4,5 data -Q default -L:4,5 debug
  fleet multi status; fleet multi restart --rolling; fleet multi stopwait --timeout 30
"""


class _RawArguments(click.Command):
    """Hands every argument to the callback untouched (click would eat `--`)."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        head = args[:args.index("--")] if "--" in args else args
        if not head or any(arg in ("-h", "--help") for arg in head):
            click.echo(ctx.get_help(), color=ctx.color)
            ctx.exit(0)
        ctx.params["argv"] = list(args)
        return []


@click.command(cls=_RawArguments, help=HELP, add_help_option=False,
               options_metavar="COMMAND [NODES] [OPTIONS] [-- PASSTHROUGH]",
               context_settings={"ignore_unknown_options": True})
@pass_cli
def multi(cli_ctx: CliContext, argv: list[str]) -> None:
    from fleet.multi import parse_multi_args
    from fleet.multictl.targets import check_form, check_restart_form, take_leading

    command, rest = argv[0], argv[1:]
    if command not in SUBCOMMANDS:
        guess = closest(command, SUBCOMMANDS)
        raise UsageError(f"unknown multi command {command!r}",
                         f"did you mean {guess}?" if guess else
                         f"use one of: {', '.join(SUBCOMMANDS)}")
    spec = parse_multi_args(rest)
    check_form(command, spec)
    leading = take_leading(command, spec)  # get's NODE, expand's TEMPLATE
    if (command == "start" or spec.as_start) and not spec.positionals:
        described = _fleet_from_file(cli_ctx, spec)
        if described:  # the file's fleet, then the command line's options (they win)
            spec = parse_multi_args([*described, *rest])
            if leading is not None:
                spec.positionals.pop()  # (it came last: the file's nodes come first)
        elif command == "start":
            check_restart_form(spec)
    _inherit_globals(cli_ctx, spec)
    view = _View(cli_ctx, quiet=spec.quiet or cli_ctx.quiet,
                 no_color=spec.no_color or cli_ctx.no_color, leading=leading)
    code = _HANDLERS[command](spec, view)
    sys.exit(code or 0)


def _fleet_from_file(cli_ctx: CliContext, spec: Any) -> list[str]:
    """The multi arguments fleet.toml's [multi] stands for ([] when it has none)."""
    from fleet.config_file import find_config, load_config
    from fleet.multictl.toml_section import multi_argv

    explicit = spec.global_options.get("--config") or cli_ctx.config
    config = load_config(find_config(explicit if isinstance(explicit, str) else None))
    return multi_argv(config) if config.multi else []


def _inherit_globals(cli_ctx: CliContext, spec: Any) -> None:
    """`fleet -A proj multi start 3` means the same as `fleet multi start 3 -A proj`."""
    given = {"--app": cli_ctx.app, "--broker": cli_ctx.broker,
             "--result-backend": cli_ctx.result_backend, "--config": cli_ctx.config}
    for option, value in given.items():
        if value and option not in spec.global_options:
            spec.global_options[option] = value
    if cli_ctx.workdir and spec.workdir is None:
        from pathlib import Path

        spec.workdir = Path(cli_ctx.workdir).expanduser().absolute()


class _View:
    """Renders the controller's events as lines (celery multi's shape, with reasons)."""

    STYLES = {"ok": {"fg": "green"}, "failed": {"fg": "red", "bold": True},
              "killed": {"fg": "red"}, "stale": {"fg": "yellow"}, "down": {"fg": "magenta"},
              "running": {"fg": "cyan"}}
    LABELS = {"ok": "OK", "failed": "FAILED", "killed": "KILLED", "down": "DOWN"}

    def __init__(self, cli_ctx: CliContext, quiet: bool, no_color: bool,
                 leading: str | None = None):
        self.cli_ctx = cli_ctx
        self.quiet = quiet
        self.no_color = no_color
        self.leading = leading  #: get's NODE, expand's TEMPLATE

    def style(self, text: str, kind: str) -> str:
        return text if self.no_color else click.style(text, **self.STYLES.get(kind, {}))

    def note(self, text: str) -> None:
        if not self.quiet:
            click.echo(text)

    def __call__(self, event: Any) -> None:
        from fleet.masking import mask_text

        kind = event.kind
        event = type(event)(event.node, kind, mask_text(event.text),
                            tuple(mask_text(line) for line in event.details))
        if kind == "waiting":
            self.note(f"> Waiting for {event.text}: {event.node}")
            return
        label = self.LABELS.get(kind)
        if label is None:
            text = self.style(event.text, kind)
        elif kind == "ok":
            text = f"{self.style(label, kind)} ({event.text})"
        else:
            text = self.style(label, kind) + (f": {event.text}" if event.text else "")
        line = f"\t> {event.node}: {text}"
        if kind == "failed":
            click.echo(line)
            for detail in event.details:
                click.echo(f"\t    {detail}")
        else:
            self.note(line)


# -- which nodes a command is about ----------------------------------------------------------


def _state() -> Any:
    from fleet.multictl.state import StateFile

    return StateFile()


def _known(spec: Any, command: str) -> list[Any]:
    """The nodes a command after start is about: the remembered ones NODES select (all of
    them when it names none), or with --spec the ones start would make (fleet.multictl
    .targets has the rule)."""
    from fleet.multictl.targets import targets

    return targets(_state(), spec, command)


def _start_timeout(spec: Any) -> float:
    from fleet.multictl.control import DEFAULT_START_TIMEOUT

    return spec.timeout if spec.timeout is not None else DEFAULT_START_TIMEOUT


# -- commands --------------------------------------------------------------------------------


def _do_start(spec: Any, view: _View) -> int:
    from fleet.multi import expand_nodes
    from fleet.multictl import control

    if spec.positionals:
        nodes = expand_nodes(spec)
        view.note(f"> Starting {len(nodes)} node(s)...")
        results = control.start(nodes, executable=spec.executable, workdir=spec.workdir,
                                timeout=_start_timeout(spec), report=view)
    else:
        records = _known(spec, "start")
        view.note(f"> Starting {len(records)} remembered node(s)...")
        results = control.start_records(records, timeout=_start_timeout(spec), report=view)
    return 0 if all(result.ok for result in results) else EXIT_FAILURE


def _stop_signal(spec: Any) -> int:
    import signal

    return spec.signal if spec.signal is not None else signal.SIGTERM


def _do_stop(spec: Any, view: _View) -> int:
    from fleet.multictl import control

    records = _known(spec, "stop")
    view.note(f"> Stopping {len(records)} node(s)...")
    results = control.stop(records, _stop_signal(spec), report=view)
    return EXIT_FAILURE if any(result.error for result in results) else 0


def _do_stopwait(spec: Any, view: _View) -> int:
    from fleet.multictl import control

    records = _known(spec, "stopwait")
    view.note(f"> Stopping {len(records)} node(s)...")
    results = control.stopwait(records, _stop_signal(spec), timeout=spec.timeout, report=view)
    return EXIT_FAILURE if any(result.error or result.killed for result in results) else 0


def _do_restart(spec: Any, view: _View) -> int:
    from fleet.multictl import control

    records = _known(spec, "restart")
    how = "one at a time" if spec.rolling else "all at once"
    view.note(f"> Restarting {len(records)} node(s), {how}...")
    results = control.restart(records, signum=_stop_signal(spec), timeout=spec.timeout,
                              rolling=spec.rolling, report=view)
    ok = len(results) == len(records) and all(result.ok for result in results)
    return 0 if ok else EXIT_FAILURE


def _do_reload(spec: Any, view: _View) -> int:
    from fleet.multictl import control

    records = _known(spec, "reload")
    view.note(f"> Reloading {len(records)} node(s) in place (HUP)...")
    results = control.reload(records, report=view)
    return EXIT_FAILURE if any(result.error or not result.signalled for result in results) \
        else 0


def _do_kill(spec: Any, view: _View) -> int:
    from fleet.multictl import control

    records = _known(spec, "kill")
    view.note(f"> Killing {len(records)} node(s)...")
    results = control.kill(records, report=view)
    return EXIT_FAILURE if any(result.error for result in results) else 0


def _do_status(spec: Any, view: _View) -> int:
    from fleet.multictl import control

    records = _known(spec, "status")
    rows = control.status(records, _consumers(view.cli_ctx, records))
    if spec.json:
        click.echo(json.dumps(rows, indent=2))
    else:
        print_table(["NODE", "PID", "STATE", "CONSUMING", "UPTIME", "MEMORY", "CHILDREN", "LOG"],
                    [[row["node"], row["pid"] or "-", row["state"], _yes_no(row["consuming"]),
                      _duration(row["uptime"]), _size(row["memory"]),
                      "-" if row["children"] is None else row["children"], row["logfile"]]
                     for row in rows])
        for row in rows:
            if row["detail"]:
                click.echo(f"{row['node']}: {row['detail']}", err=True)
    healthy = all(row["state"] == control.RUNNING and row["consuming"] is not False
                  for row in rows)
    return 0 if healthy else EXIT_NOT_RUNNING


def _consumers(cli_ctx: CliContext, records: list[Any]) -> dict[str, Any] | None:
    """Which nodes have a fresh heartbeat at their broker (None: could not ask)."""
    from fleet.multictl import control

    running = [record for record in records if control.probe(record).running]
    if not running:
        return {}
    urls, fresh, apps = [], 0.0, {}
    for record in running:
        # The broker as the node sees it: its --broker, else its app's settings (fleet.toml
        # in its directory, FLEET_* variables, the app's own configuration).
        key = tuple(arg for arg in record.argv if arg.startswith(("--app=", "--config=")))
        if (key, record.workdir) not in apps:
            apps[key, record.workdir] = _node_app(record)
        app = apps[key, record.workdir]
        if app is None:
            return None
        urls.append(control.broker_url_of(record, app.broker_url))
        fresh = max(fresh, app.conf.worker_heartbeat_timeout)
    return control.broker_consumers(urls, fresh)


def _node_app(record: Any) -> Any:
    options = dict(arg[2:].split("=", 1) for arg in record.argv
                   if arg.startswith(("--app=", "--config=")))
    node_app = AppOptions(app=options.get("app"), config=options.get("config"),
                          workdir=record.workdir)
    try:
        return node_app.load_app(required=False)
    except FleetError:
        return None


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "NO"


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    text = f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{days}d {text}" if days else text


def _size(amount: int | None) -> str:
    if amount is None:
        return "-"
    return f"{amount / 1048576:.1f}M"


def _do_show(spec: Any, view: _View) -> int:
    from fleet.masking import mask_argv

    for record in _known(spec, "show"):
        click.echo(shlex.join(mask_argv(record.argv)))  # passwords masked: README, Security
    return 0


def _do_names(spec: Any, view: _View) -> int:
    for record in _known(spec, "names"):
        click.echo(record.name)
    return 0


def _do_get(spec: Any, view: _View) -> int:
    import os

    from fleet.multictl.launch import shell_command
    from fleet.multictl.targets import one

    if spec.positionals and not spec.as_start:
        raise UsageError(f"get takes one NODE, not {len(spec.positionals) + 1}",
                         "e.g. fleet multi get 2 (or get --spec NODE NODES... to preview)")
    record = one(_known(spec, "get"), view.leading)
    line = shell_command(record, os.environ, reveal=spec.reveal_secrets)
    click.echo(line)
    if not spec.reveal_secrets and line != shell_command(record, os.environ, reveal=True):
        click.echo("fleet multi get: passwords are masked (********); add --reveal-secrets "
                   "to print them for pasting", err=True)
    return 0


def _do_expand(spec: Any, view: _View) -> int:
    from fleet.multi import expand_template

    for line in expand_template(view.leading, _known(spec, "expand")):
        click.echo(line)
    return 0


_HANDLERS = {"start": _do_start, "stop": _do_stop, "stopwait": _do_stopwait,
             "restart": _do_restart, "reload": _do_reload, "kill": _do_kill,
             "status": _do_status, "show": _do_show, "get": _do_get, "names": _do_names,
             "expand": _do_expand}


COMMANDS = (multi,)
