"""What every command module of the CLI shares: the context object (`CliContext`), the
global options, click options built from option records, and table rendering.

Command modules import this module, never the package (fleet/cli/__init__.py builds the
`fleet` group from them), so the CLI has no import circle.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import click

from fleet.app_options import APP_OPTIONS, COUNT, FLAG, SECONDS, AppOptions, Option


@dataclass
class CliContext(AppOptions):
    """Options shared by every command, filled from wherever the user typed them: the app
    options (fleet.app_options) and how to print."""

    no_color: bool = False
    quiet: bool = False

    def echo(self, text: str = "", err: bool = False) -> None:
        if not self.quiet or err:
            click.echo(text, err=err, color=None if not self.no_color else False)

    def style(self, text: str, **styles: Any) -> str:
        return text if self.no_color else click.style(text, **styles)


def click_option(option: Option, **extra: Any) -> Any:
    """The click option an `Option` record describes (flags, value type, help, default)."""
    settings: dict[str, Any] = {"help": option.help, "metavar": option.metavar, **extra}
    if option.kind == FLAG:
        settings["is_flag"] = True
    elif option.kind == COUNT:
        settings["type"] = click.IntRange(min=1)
    elif option.kind == SECONDS:
        settings["type"] = click.FloatRange(min=0, min_open=True)
    elif option.choices:
        settings["type"] = click.Choice(option.choices)
    if option.default is not None:
        settings["default"] = option.default
    if option.show_default:
        settings["show_default"] = True
    return click.option(*option.flags, option.dest, **settings)


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    if value is not None and value is not False:
        setattr(ctx.ensure_object(CliContext), param.name, value)
    return value


#: How to print: options of the CLI alone (the app options come from fleet.app_options).
OUTPUT_OPTIONS: tuple[Option, ...] = (
    Option("no_color", ("--no-color",), "No colours in the output.", FLAG),
    Option("quiet", ("-q", "--quiet"), "Print only what was asked for and errors.", FLAG),
)


def global_options(func: Any) -> Any:
    """Add the global options to a command (they also work on the `fleet` group itself)."""
    for option in reversed((*APP_OPTIONS, *OUTPUT_OPTIONS)):
        func = click_option(option, expose_value=False, callback=_remember)(func)
    return func


pass_cli = click.make_pass_decorator(CliContext, ensure=True)


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
