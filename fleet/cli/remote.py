"""`fleet inspect`, `fleet control`, `fleet status` and `fleet events`: remote control.

The sub-commands of `inspect` and `control` are generated from the one registry of remote
commands (fleet.engine.control.COMMANDS): their arguments, `--help` and `--list`. This module
parses and renders; fleet.inspect does the work.

Output: for each node that replied `->  w1@host: OK` (or ERROR) and the reply indented
below, then a blank line and `N nodes online.`. `--json` prints one object keyed by node
name, each value the node's reply: {"ok": ...} or {"error": ...}. Exit codes: 69 when no
node replied (with why that may be), 1 when a node replied with an error.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

import click

from fleet.app_options import split_list
from fleet.cli.context import CliContext, global_options, pass_cli
from fleet.operator_errors import (
    EXIT_FAILURE,
    EXIT_UNAVAILABLE,
    FleetError,
    PermissionProblem,
    UsageError,
)

if TYPE_CHECKING:
    from fleet.engine.control import Command
    from fleet.inspect import Replies

#: The kinds of fleet.engine.control (not imported here: `fleet --help` stays fast).
INSPECT, CONTROL = "inspect", "control"


# == shared options ================================================================================

def remote_options(func: Any) -> Any:
    """-d/-t/-j, accepted on the group (`fleet inspect -t 2 ping`) and on each command."""
    func = click.option("-j", "--json", "as_json", is_flag=True, default=None,
                        help="Print one JSON object keyed by node name.")(func)
    func = click.option("-t", "--timeout", type=click.FloatRange(min=0, min_open=True),
                        metavar="S", help="Seconds to wait for replies (default 1.0); the "
                        "command returns as soon as every node answered.")(func)
    func = click.option("-d", "--destination", metavar="NODE,NODE",
                        help="Only these nodes (w1@host,w2@host); default: every node.")(func)
    return func


def _remember_remote(ctx: click.Context, destination: str | None, timeout: float | None,
                     as_json: bool | None) -> dict[str, Any]:
    """Merge this level's options over the group's (the one closest to the command wins)."""
    merged = dict(ctx.meta.get("fleet.remote", {}))
    for key, value in (("destination", destination), ("timeout", timeout),
                       ("as_json", as_json)):
        if value is not None:
            merged[key] = value
    ctx.meta["fleet.remote"] = merged
    return merged


# == inspect and control: groups generated from the registry ====================================

class RemoteGroup(click.Group):
    """A group whose sub-commands come from the registry of one kind."""

    def __init__(self, kind: str, **attrs: Any):
        super().__init__(**attrs)
        self.kind = kind

    def list_commands(self, ctx: click.Context) -> list[str]:
        from fleet.engine.control import commands_of

        return [cmd.name for cmd in commands_of(self.kind)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        from fleet.engine.control import CommandError, get_command

        try:
            cmd = get_command(name, self.kind)
        except CommandError:
            return None
        return _make_command(cmd)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> Any:
        from fleet.engine.control import CommandError, get_command

        name = args[0] if args else ""
        if name and not name.startswith("-") and self.get_command(ctx, name) is None:
            try:
                get_command(name, self.kind)
            except CommandError as exc:
                raise click.UsageError(str(exc), ctx) from None
        return super().resolve_command(ctx, args)


_GROUP_HELP = {
    INSPECT: "Ask nodes questions (read-only): who is up, what runs, what is reserved.",
    CONTROL: "Change running nodes: rate and time limits, revokes, queues, pool, shutdown.",
}


def _group(kind: str) -> click.Group:
    @click.pass_context
    def callback(ctx: click.Context, show_list: bool, destination: str | None,
                 timeout: float | None, as_json: bool | None) -> None:
        from fleet.engine.control import commands_of

        _remember_remote(ctx, destination, timeout, as_json)
        if show_list:
            if as_json:
                click.echo(json.dumps([_describe(cmd) for cmd in commands_of(kind)], indent=2))
            else:
                for cmd in commands_of(kind):
                    click.echo(f"{cmd.signature():<28} {cmd.help}")
            ctx.exit(0)
        if ctx.invoked_subcommand is None:
            click.echo(ctx.get_help())
            ctx.exit(0)

    callback.__name__ = kind
    callback = remote_options(callback)
    callback = click.option("--list", "show_list", is_flag=True,
                            help=f"List the {kind} commands and their arguments (with "
                            "--json: as JSON).")(callback)
    callback = global_options(callback)
    example = ("fleet inspect active -d w1@host" if kind == INSPECT
               else "fleet control rate_limit proj.tasks.add 10/s")
    help_text = (f"{_GROUP_HELP[kind]}\n\nExample: {example}\n\n"
                 f"`fleet {kind} --list` lists the commands with their arguments, "
                 f"`fleet {kind} COMMAND --help` describes one. Exit status: 69 when no node "
                 "replied (the message says which nodes the broker knows), 1 when a node "
                 "replied with an error.")
    return click.group(kind, cls=RemoteGroup, kind=kind, help=help_text,
                       invoke_without_command=True,
                       context_settings={"help_option_names": ["-h", "--help"]})(callback)


def _describe(cmd: Command) -> dict[str, Any]:
    """A command of the registry as JSON (`--list --json`)."""
    return {"name": cmd.name, "kind": cmd.kind, "help": cmd.help, "usage": cmd.signature(),
            "timeout": cmd.timeout,
            "arguments": [{"name": arg.name, "type": arg.type, "help": arg.help,
                           "many": arg.many, "required": arg.required,
                           **({} if arg.required else {"default": arg.default})}
                          for arg in cmd.args]}


def _make_command(cmd: Command) -> click.Command:
    @click.pass_context
    def run(ctx: click.Context, destination: str | None, timeout: float | None,
            as_json: bool | None, **arguments: Any) -> None:
        from fleet.engine.control import CommandError, parse_command_line

        options = _remember_remote(ctx, destination, timeout, as_json)
        words: list[str] = []
        for arg in cmd.args:
            value = arguments.get(arg.name)
            if arg.many:
                words += list(value or ())
            elif value is not None:
                words.append(value)
        try:
            checked = parse_command_line(cmd, words)
        except CommandError as exc:  # (click names the command already)
            raise click.UsageError(str(exc).removeprefix(f"{cmd.name}: "), ctx) from None
        _run_remote(ctx.ensure_object(CliContext), cmd, checked, options)

    for arg in reversed(cmd.args):
        run = click.argument(arg.name, nargs=-1 if arg.many else 1, required=arg.required,
                             metavar=arg.usage())(run)
    run = remote_options(run)
    run = global_options(run)
    lines = [cmd.help, "", "\b"]
    lines += [f"{arg.usage():<18} {arg.help}" for arg in cmd.args] or ["(no arguments)"]
    lines += ["", f"Default timeout: {cmd.timeout:g}s."]
    return click.command(cmd.name, help="\n".join(lines), short_help=cmd.help)(run)


def _run_remote(cli_ctx: CliContext, cmd: Command, arguments: dict[str, Any],
                options: dict[str, Any]) -> None:
    app = cli_ctx.load_app(required=False)
    destination = split_list(options.get("destination")) or None
    replies = _broadcast(app, cmd.name, arguments, destination, options.get("timeout"))
    _report(cli_ctx, replies, bool(options.get("as_json")))


def _broadcast(app: Any, name: str, arguments: dict[str, Any], destination: list[str] | None,
               timeout: float | None) -> Replies:
    """Broadcast; a broker that cannot be reached is a 'no replies' error (exit 69)."""
    from fleet.inspect import Replies, explain_silence

    try:
        return app.control.broadcast(name, arguments, destination, True, timeout)
    except FleetError as exc:
        if isinstance(exc, UsageError | PermissionProblem):
            raise  # ours to fix, not the broker's: its own line and exit code
        problem = exc.one_line()
    except Exception as exc:
        if not _is_broker_error(exc):
            raise
        problem = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    empty = Replies(command=name, timeout=timeout or 1.0)
    raise FleetError(explain_silence(empty, app.broker_url, problem),
                     exit_code=EXIT_UNAVAILABLE)


def _is_broker_error(exc: BaseException) -> bool:
    module = type(exc).__module__
    return module.startswith(("redis", "sqlite3")) or isinstance(exc, ConnectionError | OSError)


def _report(cli_ctx: CliContext, replies: Replies, as_json: bool) -> None:
    """Print the replies; exit 69 when there are none, 1 when a node reported an error."""
    from fleet.inspect import explain_silence

    if not replies:
        raise FleetError(explain_silence(replies, cli_ctx.load_app(required=False).broker_url),
                         exit_code=EXIT_UNAVAILABLE)
    if as_json:
        click.echo(json.dumps({node: replies[node] for node in sorted(replies)}, indent=2,
                              default=repr))
    else:
        for line in render_replies(replies):
            click.echo(line if cli_ctx.no_color or not line.startswith("->  ") else
                       _colour(cli_ctx, line))
        cli_ctx.echo()
        cli_ctx.echo(f"{len(replies)} node{'s' if len(replies) != 1 else ''} online.")
    _warn_about_missing(replies)
    if replies.errors():
        sys.exit(EXIT_FAILURE)


def _colour(cli_ctx: CliContext, line: str) -> str:
    node, _, state = line[4:].rpartition(": ")
    return "->  " + cli_ctx.style(node, fg="cyan") + ": " + \
        cli_ctx.style(state, fg="green" if state == "OK" else "red")


def _warn_about_missing(replies: Replies) -> None:
    for name in replies.missing:
        seen = {node.name: node for node in replies.known}.get(name)
        if seen is None:  # (not waited for)
            click.echo(f"fleet: no reply from {name}: not known to the broker (check the name "
                       "with `fleet status`)", err=True)
            continue
        click.echo(f"fleet: no reply from {name} within {replies.timeout:g}s (last heartbeat "
                   f"{seen.age:.1f}s ago)", err=True)
    for name in dict.fromkeys(replies.duplicates):
        click.echo(f"fleet: more than one node answered as {name}: give each node a unique "
                   "name (fleet worker -n NAME@%h)", err=True)


def render_replies(replies: dict[str, dict]) -> list[str]:
    """`->  node: OK` and the indented reply, for every node (sorted by name)."""
    lines = []
    for node in sorted(replies):
        reply = replies[node]
        failed = isinstance(reply, dict) and "error" in reply
        lines.append(f"->  {node}: {'ERROR' if failed else 'OK'}")
        body = reply.get("error") if failed else reply.get("ok") if isinstance(reply, dict) \
            else reply
        lines += ["    " + line for line in render_body(body)]
    return lines


def render_body(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.splitlines() or [""]
    if isinstance(value, list):
        if not value:
            return ["- empty -"]
        return [f"* {item if isinstance(item, str) else json.dumps(item, default=repr)}"
                for item in value]
    if isinstance(value, dict) and not value:
        return ["- empty -"]
    return json.dumps(value, indent=2, default=repr, sort_keys=True).splitlines()


# == status ===================================================================================

@click.command()
@global_options
@remote_options
@pass_cli
def status(cli_ctx: CliContext, destination: str | None, timeout: float | None,
           as_json: bool | None) -> None:
    """List the online nodes, one per line (each answers a ping).

    Exits 69 when no node answered, saying which nodes the broker knows and when each was
    last seen.
    """
    app = cli_ctx.load_app(required=False)
    replies = _broadcast(app, "ping", {}, split_list(destination) or None, timeout)
    from fleet.inspect import explain_silence

    if not replies:
        raise FleetError(explain_silence(replies, app.broker_url), exit_code=EXIT_UNAVAILABLE)
    known = {node.name: node for node in replies.known}
    if as_json:
        out = {name: {**replies[name], **(known[name].as_dict() if name in known else {})}
               for name in sorted(replies)}
        click.echo(json.dumps(out, indent=2, default=repr))
    else:
        for name in sorted(replies):
            seen = known.get(name)
            detail = ""
            if seen is not None:
                info = seen.info
                detail = (f"  pid {seen.pid} on {seen.host}, {info.get('active', 0)} active, "
                          f"{info.get('processed', 0)} processed")
            line = f"->  {name}: {'ERROR' if 'error' in replies[name] else 'OK'}"
            click.echo((line if cli_ctx.no_color else _colour(cli_ctx, line)) + detail)
        cli_ctx.echo()
        cli_ctx.echo(f"{len(replies)} node{'s' if len(replies) != 1 else ''} online.")
    _warn_about_missing(replies)


# == events ===================================================================================

@click.command()
@global_options
@click.option("--dump", is_flag=True, help="Print every event as it arrives, one per line "
              "(time, node, event, task, args, result or exception, runtime).")
@click.option("-j", "--json", "as_json", is_flag=True, help="Print every event as one JSON "
              "object per line (implies --dump).")
@pass_cli
def events(cli_ctx: CliContext, dump: bool, as_json: bool) -> None:
    """Watch the fleet's events: a live view, or a dump with --dump.

    Without --dump: a terminal view of the nodes (status, load), active tasks, rates per
    task and recent failures, refreshed in place; q quits. Task events come only from
    nodes started with -E (or after `fleet control enable_events`); worker events
    (online, heartbeat, offline) always.
    """
    app = cli_ctx.load_app(required=False)
    if not (dump or as_json):  # (JSON is for programs: never the live view)
        if not (sys.stdout.isatty() and sys.stdin.isatty()):
            raise UsageError("the live view needs a terminal", "use --dump to print events "
                             "as lines (e.g. into a file or a pipe)")
        from fleet.cli.events_view import run_monitor

        run_monitor(app)
        return
    from fleet.engine.events import format_event, listen
    from fleet.engine.transport import mask_url

    announced = False

    def notice(text: str) -> None:
        cli_ctx.echo(f"fleet events: {text}", err=True)

    try:
        for event in listen(app, notice=notice):
            if event is None:
                if not announced:  # subscribed: nothing sent from now on is missed
                    announced = True
                    cli_ctx.echo(f"fleet events: listening on {mask_url(app.broker_url)} "
                                 "(Ctrl-C to stop)", err=True)
                continue
            click.echo(json.dumps(event, default=repr) if as_json else format_event(event))
            sys.stdout.flush()
    except KeyboardInterrupt:
        return


COMMANDS = (_group(INSPECT), _group(CONTROL), status, events)
