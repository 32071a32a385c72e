"""fleet/cli/context.py: the context every command shares, the global options, click options
built from option records, and table rendering; and the shape of the CLI package."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from fleet.app_options import APP_OPTIONS, COUNT, FLAG, SECONDS, AppOptions, Option
from fleet.cli import cli
from fleet.cli.context import (
    OUTPUT_OPTIONS,
    CliContext,
    click_option,
    global_options,
    pass_cli,
    print_table,
)

CLI_PACKAGE = Path(__file__).resolve().parents[3] / "fleet" / "cli"


def test_the_context_is_the_app_options_plus_how_to_print():
    context = CliContext(app="proj", quiet=True)
    assert isinstance(context, AppOptions)
    assert (context.app, context.broker, context.quiet, context.no_color) == \
        ("proj", None, True, False)


def test_quiet_silences_echo_but_never_errors(capsys):
    context = CliContext(quiet=True)
    context.echo("chatter")
    context.echo("broken", err=True)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == "broken\n"


def test_style_adds_colour_unless_no_color():
    assert CliContext(no_color=True).style("OK", fg="green") == "OK"
    assert CliContext().style("OK", fg="green") == click.style("OK", fg="green")


def test_click_options_follow_the_record():
    kinds = {kind: click_option(Option("x", ("-x", "--ex"), "Help.", kind))(lambda **_: None)
             for kind in (COUNT, SECONDS, FLAG)}
    [count] = kinds[COUNT].__click_params__
    [seconds] = kinds[SECONDS].__click_params__
    [flag] = kinds[FLAG].__click_params__
    assert count.opts == ["-x", "--ex"] and count.name == "x" and count.help == "Help."
    assert isinstance(count.type, click.IntRange) and count.type.min == 1
    assert isinstance(seconds.type, click.FloatRange) and seconds.type.min_open
    assert flag.is_flag


def test_global_options_are_the_app_options_then_the_output_options():
    @click.command()
    @global_options
    def command() -> None:
        pass

    assert [param.name for param in command.params] == \
        [option.dest for option in (*APP_OPTIONS, *OUTPUT_OPTIONS)]
    assert not any(param.expose_value for param in command.params)


@pytest.mark.parametrize("argv", [["-A", "proj", "-q", "probe"], ["probe", "-A", "proj", "-q"],
                                  ["-A", "other", "probe", "--app=proj", "--quiet"]])
def test_global_options_work_before_and_after_the_command_the_closest_wins(argv):
    seen = []

    @click.group()
    @global_options
    def group() -> None:
        pass

    @group.command()
    @global_options
    @pass_cli
    def probe(cli_ctx: CliContext) -> None:
        seen.append(cli_ctx)

    result = CliRunner().invoke(group, argv)
    assert result.exit_code == 0, result.output
    assert seen[0].app == "proj" and seen[0].quiet


def test_print_table_right_aligns_numbers_and_left_aligns_the_rest(capsys):
    print_table(["NAME", "COUNT"], [["a", 5], ["long-name", 120]])
    assert capsys.readouterr().out.splitlines() == [
        "NAME       COUNT",
        "a              5",
        "long-name    120",
    ]


def test_fleet_lists_its_commands_most_used_first():
    assert list(cli.commands) == ["worker", "call", "result", "queues", "purge", "report",
                                  "config", "inspect", "control", "status", "events", "beat",
                                  "multi", "dashboard", "upgrade"]


def test_no_command_module_imports_the_cli_package():
    """The package builds the group from the command modules, never the other way round."""
    for path in sorted(CLI_PACKAGE.glob("*.py")):
        if path.name == "__init__.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.module != "fleet.cli", f"{path.name} imports fleet.cli"
            elif isinstance(node, ast.Import):
                assert "fleet.cli" not in [alias.name for alias in node.names], path.name


def test_the_cli_imports_no_engine_module_until_a_command_needs_one():
    """`fleet --version` and `fleet --help` stay fast: the engine is imported lazily."""
    code = ("import sys, fleet.cli; "
            "print(sorted(m for m in sys.modules if m.startswith('fleet.engine')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
