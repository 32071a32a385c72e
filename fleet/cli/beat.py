"""`fleet beat`: run the periodic-task scheduler, or list its entries (`--list`)."""

from __future__ import annotations

import json
import socket
import sys

import click

from fleet.app_options import parse_overrides
from fleet.cli.context import CliContext, global_options, pass_cli, print_table


@click.command()
@global_options
@click.option("-l", "--loglevel", default="info", show_default=True, metavar="LEVEL",
              help="debug, info, warning, error or critical.")
@click.option("-f", "--logfile", metavar="PATH", help="Log to this file (default: stderr).")
@click.option("--list", "list_entries", is_flag=True,
              help="Print each entry with its schedule, last and next run, then exit.")
@click.option("-j", "--json", "as_json", is_flag=True, help="With --list: print JSON.")
@click.argument("overrides", nargs=-1, metavar="[-- SETTING=VALUE...]")
@pass_cli
def beat(cli_ctx: CliContext, loglevel: str, logfile: str | None, list_entries: bool,
         as_json: bool, overrides: tuple[str, ...]) -> None:
    """Run the periodic-task scheduler, or --list its entries.

    Entries come from app.conf.beat_schedule or [beat.schedule.NAME] in fleet.toml.

    \b
    Run as many beats as you like: one holds a lease in the broker and sends, the others
    stand by and take over within beat_lease_seconds if it dies. No run is ever sent twice.
    An entry that came due while no beat ran is sent once at start, then on schedule.
    TERM or INT stops the beat and hands the lease over at once.

    \b
    fleet beat -A proj
    fleet beat -A proj --list
    fleet beat -A proj -- beat_lease_seconds=5 beat_max_loop_interval=1
    """
    from fleet.engine.beat import Scheduler, run_beat
    from fleet.engine.log import parse_level, setup_logging

    app = cli_ctx.load_app()
    app.conf.update(parse_overrides(overrides), layer="cli", where="command line: ")
    if list_entries:
        _print_entries(cli_ctx, Scheduler(app).describe(), as_json)
        return
    setup_logging(socket.gethostname(), "beat", parse_level(loglevel), logfile)
    sys.exit(run_beat(app))


def _print_entries(cli_ctx: CliContext, rows: list[dict], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        cli_ctx.echo("No periodic tasks: set beat_schedule, or add [beat.schedule.NAME] "
                     "tables to fleet.toml.")
        return
    print_table(["NAME", "TASK", "SCHEDULE", "LAST RUN (UTC)", "NEXT RUN (UTC)"],
                [[r["name"], r["task"], r["schedule"], r["last_run"] or "-", r["next_run"]]
                 for r in rows])


COMMANDS = (beat,)
