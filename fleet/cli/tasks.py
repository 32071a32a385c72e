"""`fleet call`, `result`, `queues`, `purge` and `report`: sending tasks by name, reading
their results, and the queues they wait in; they need no app (a bare one on the configured
broker does)."""

from __future__ import annotations

import json
import sys
from typing import Any

import click

from fleet.app_options import split_list
from fleet.cli.context import CliContext, global_options, pass_cli, print_table
from fleet.operator_errors import EXIT_FAILURE, FleetError, UsageError

# -- sending and results ---------------------------------------------------------------------

@click.command()
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
    """A JSON argument, read as strictly as a node reads a message (no NaN, no nesting
    deeper than a message may have, ...): any mistake is a UsageError saying what."""
    from fleet.engine.message import parse_json

    try:
        value = parse_json(text)
    except ValueError as exc:
        raise UsageError(f"{option} is not valid JSON ({exc})", f"give {expected}") from None
    if not isinstance(value, kind):
        raise UsageError(f"{option} must be {expected}")
    return value


@click.command()
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
    1 with its state if it is not done after --timeout: a state of the task's own
    (`update_state`) is printed with its meta, e.g. PROGRESS {"done": 30, "total": 100}.
    """
    from fleet.engine import states
    from fleet.exceptions import TimeoutError

    app = cli_ctx.load_app(required=False)
    backend = app.backend
    try:
        meta = backend.wait(task_id, timeout, 0.1) if timeout > 0 else backend.get_meta(task_id)
    except TimeoutError as exc:
        meta = backend.get_meta(task_id)
        click.echo(json.dumps(meta, indent=2) if as_json else _state_line(meta))
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
        click.echo(_state_line(meta))
    if meta["state"] != states.SUCCESS:
        sys.exit(EXIT_FAILURE)


def _state_line(meta: dict) -> str:
    """A state not final yet, with its meta when it has one (custom states)."""
    info = meta.get("result")
    return meta["state"] if info is None else f"{meta['state']} {json.dumps(info)}"


# -- queues ------------------------------------------------------------------------------------

@click.command()
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


@click.command()
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

@click.command()
@global_options
@click.option("-j", "--json", "as_json", is_flag=True, help="Print JSON.")
@pass_cli
def report(cli_ctx: CliContext, as_json: bool) -> None:
    """Versions, platform and effective settings (secrets masked), for bug reports."""
    from fleet.report import build_report, format_report

    app = cli_ctx.load_app(required=False)
    data = build_report(app, cli_ctx.app_spec())
    click.echo(json.dumps(data, indent=2, default=str) if as_json else format_report(data))


COMMANDS = (call, result, queues, purge, report)
