"""`fleet config show` and `fleet config check`: what is in effect, and what is wrong."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import click

from fleet.cli.context import CliContext, global_options, pass_cli, print_table
from fleet.operator_errors import EXIT_CONFIG, ConfigError, FleetError


@click.group()
def config() -> None:
    """Show the effective settings, or check fleet.toml and the environment.

    \b
    Precedence, lowest first: defaults < the app's code < fleet.toml
    < FLEET_* environment variables < command-line flags.
    fleet.toml is --config PATH, else $FLEET_CONFIG, else ./fleet.toml.
    """


@config.command()
@global_options
@click.option("--changed", is_flag=True, help="Only settings that differ from the default.")
@click.option("-j", "--json", "as_json", is_flag=True, help="Print JSON.")
@pass_cli
def show(cli_ctx: CliContext, changed: bool, as_json: bool) -> None:
    """Print every setting in effect and where its value came from."""
    from fleet.engine.transport import mask_url

    app = cli_ctx.load_app(required=False)
    file_path = cli_ctx.file_config().path
    rows = []
    for name, value in app.conf.masked().items():
        layer = app.conf.source(name)
        if changed and layer == "default":
            continue
        rows.append({"setting": name, "value": value,
                     "source": _describe_source(layer, name, file_path)})
    if app.conf.broker_url is None:  # say what "no broker" means
        for row in rows:
            if row["setting"] == "broker_url":
                row["value"] = mask_url(app.broker_url)
                row["source"] = "default (the embedded SQLite broker)"
    meta = {"app": cli_ctx.app_spec(), "config_file": str(file_path) if file_path else None}
    if as_json:
        click.echo(json.dumps({**meta, "settings": rows}, indent=2, default=str))
        return
    cli_ctx.echo(f"app: {meta['app'] or '(none)'}    config file: "
                 f"{meta['config_file'] or '(none)'}")
    print_table(["SETTING", "VALUE", "SOURCE"],
                [[r["setting"], _short(r["value"]), r["source"]] for r in rows])


def _describe_source(layer: str, name: str, file_path: Any) -> str:
    if layer == "env":
        return f"env FLEET_{name.upper()}"
    if layer == "file":
        return f"file {file_path}"
    if layer == "app":
        return "app code"
    if layer == "cli":
        return "command line"
    return "default"


def _short(value: Any, limit: int = 60) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[:limit - 3] + "..."


@config.command()
@global_options
@pass_cli
def check(cli_ctx: CliContext) -> None:
    """Validate fleet.toml, FLEET_* variables and the app; one line per problem.

    Exits 0 when everything is valid, 78 otherwise.
    """
    from fleet.config_file import check_config, find_config

    cli_ctx.enter_workdir()
    problems: list[str] = []
    path = None
    try:
        path = find_config(cli_ctx.config)
    except ConfigError as exc:
        problems.append(exc.one_line())
    if path is not None:
        problems += _file_problems(path, check_config)
    try:
        from fleet.engine.settings import Settings

        Settings(env=os.environ)
    except ConfigError as exc:
        problems.append(exc.one_line())
    if not problems and cli_ctx.app_spec():
        try:
            cli_ctx.load_app()
        except FleetError as exc:
            problems.append(exc.one_line())
    for line in problems:
        click.echo(line, err=True)
    if problems:
        sys.exit(EXIT_CONFIG)
    where = str(path) if path else "no fleet.toml"
    cli_ctx.echo(f"OK: {where}, FLEET_* environment" +
                 (f", app {cli_ctx.app_spec()}" if cli_ctx.app_spec() else ""))


def _file_problems(path: Any, check_config: Any) -> list[str]:
    import tomllib

    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        return [f"{path}: not valid TOML ({exc})"]
    except (UnicodeDecodeError, RecursionError):
        from fleet.config_file import load_config

        try:
            load_config(path)  # says what is wrong, as every other command would
        except ConfigError as exc:
            return [exc.one_line()]
        return [f"{path}: cannot read it"]
    except OSError as exc:
        return [f"{path}: cannot read it ({exc.strerror})"]
    _, problems = check_config(data, path)
    return [problem.one_line() for problem in problems]


COMMANDS = (config,)
