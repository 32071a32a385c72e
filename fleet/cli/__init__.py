"""The `fleet` command: a thin click layer over the library. Parse, call, render, exit code.

One module per command group (worker, tasks: call/result/queues/purge/report, config,
remote: inspect/control/status/events, beat, multi, dashboard, upgrade), each listing its
click commands in `COMMANDS`; what they share is fleet/cli/context.py. This module builds
the `fleet` group from them and runs it (`main`, the console script).

Global options (-A/--app, -b/--broker, --result-backend, --workdir, --config, --no-color,
-q/--quiet) work both before and after the sub-command (`fleet -A proj worker` and
`fleet worker -A proj`); the one closest to the sub-command wins.

Every error is one line on stderr (`fleet: ...` with what to do) and a documented exit code
(see fleet.operator_errors): 2 for usage errors.
"""

from __future__ import annotations

import os
import sys
import warnings

import click

from fleet import __version__
from fleet.cli import beat, config, dashboard, multi, remote, tasks, upgrade, worker
from fleet.cli.context import CliContext, global_options
from fleet.operator_errors import EXIT_FAILURE, EXIT_USAGE, FleetError, describe_failure

#: The command modules, in the order `fleet --help` lists their commands (most used first).
COMMAND_MODULES = (worker, tasks, config, remote, beat, multi, dashboard, upgrade)


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


def _add_commands(group: click.Group) -> None:
    for module in COMMAND_MODULES:
        for command in module.COMMANDS:
            group.add_command(command)


_add_commands(cli)


_python_format_warning = warnings.formatwarning


def _format_warning(message: Warning | str, category: type[Warning], filename: str,
                    lineno: int, line: str | None = None) -> str:
    """fleet's own warnings (Celery's setting names, ...) as one line for the operator."""
    from fleet.exceptions import CeleryNameWarning

    if issubclass(category, CeleryNameWarning):
        return f"fleet: warning: {message}\n"
    return _python_format_warning(message, category, filename, lineno, line)


def main(argv: list[str] | None = None) -> None:
    """Run the CLI; turn every error into one line on stderr and its exit code."""
    args = sys.argv[1:] if argv is None else argv
    warnings.formatwarning = _format_warning
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
    except KeyboardInterrupt:
        code = 130
    except BrokenPipeError:
        code = EXIT_FAILURE
    except Exception as exc:
        if os.environ.get("FLEET_DEBUG") and not isinstance(exc, FleetError):
            raise
        line, code = describe_failure(exc)
        click.echo(f"fleet: {line}", err=True)
    sys.exit(code if isinstance(code, int) else 0)
