"""`fleet dashboard`: serve the fleet's web dashboard (the optional extra `fleet[dashboard]`).

This module parses and reports; fleet.dashboard does the work. It imports nothing of the
dashboard (nor Starlette) until the command runs, so `fleet --help` stays fast and a
missing extra is one line that says what to install.
"""

from __future__ import annotations

import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from fleet.cli.context import CliContext, global_options, pass_cli
from fleet.operator_errors import UsageError

if TYPE_CHECKING:
    from fleet.dashboard.settings import DashboardSettings


@click.command()
@global_options
@click.option("--address", default="127.0.0.1", show_default=True, metavar="ADDR",
              help="Address to listen on. Any address other than a loopback one needs "
                   "--auth-file, FLEET_DASHBOARD_AUTH or --auth.")
@click.option("--port", type=click.IntRange(0, 65535), default=5555, show_default=True,
              help="TCP port (0: any free port, shown in the log).")
@click.option("--auth", metavar="USER:PASSWORD",
              help="Require this login. Visible to other users in `ps` until the "
                   "dashboard renames its process: prefer --auth-file or "
                   "FLEET_DASHBOARD_AUTH.")
@click.option("--auth-file", metavar="FILE", type=click.Path(dir_okay=False),
              help="Require a login from this file: one USER:PASSWORD a line (keep it "
                   "mode 0600).")
@click.option("--url-prefix", metavar="PATH", default="",
              help="Serve under this path (e.g. /fleet behind a reverse proxy).")
@click.option("--history-file", metavar="FILE", type=click.Path(dir_okay=False),
              help="The SQLite file that keeps the task history across restarts "
                   "(default: dashboard.db in the state directory).")
@click.option("--max-tasks", type=click.IntRange(min=1), default=100_000, show_default=True,
              metavar="N", help="Tasks kept in the history (the oldest go first).")
@click.option("--retention", type=click.FloatRange(min=0.1), default=24.0, show_default=True,
              metavar="HOURS", help="Hours of chart data kept.")
@click.option("--enable-events/--no-enable-events", default=True, show_default=True,
              help="Ask the nodes to send task events (as `fleet control enable_events`), "
                   "now and every minute for nodes started later.")
@click.option("-l", "--loglevel", default="info", show_default=True, metavar="LEVEL",
              help="debug, info, warning, error or critical.")
@click.option("-f", "--logfile", metavar="PATH", help="Log to this file (default: stderr).")
@pass_cli
def dashboard(cli_ctx: CliContext, address: str, port: int, auth: str | None,
              auth_file: str | None, url_prefix: str, history_file: str | None,
              max_tasks: int, retention: float, enable_events: bool, loglevel: str,
              logfile: str | None) -> None:
    """Serve the fleet's web dashboard (like Flower): nodes, queues, tasks, charts, beat.

    \b
    Pages: the overview (nodes and queues), a live task list with filters and search,
    task and node details, charts of throughput, failures and queue lengths, and the
    periodic tasks. Actions (revoke, terminate, rate and time limits, pool size,
    autoscale, consumers, shutdown, purge, send again) need a login when logins are
    set, and a CSRF token always. JSON for every table under /api/..., Prometheus
    metrics at /metrics, a health check at /healthz.

    \b
    The task history is kept in a SQLite file (--history-file), so it survives a
    restart; TERM or INT stops the dashboard cleanly.

    \b
    fleet dashboard -A proj                          http://127.0.0.1:5555/
    FLEET_DASHBOARD_AUTH=admin:s3cret fleet dashboard --address 0.0.0.0
    fleet dashboard --auth-file /etc/fleet/dashboard.auth --url-prefix /fleet
    """
    from fleet.dashboard import INSTALL_HINT, missing_packages

    missing = missing_packages()
    if missing:
        raise UsageError(f"the dashboard needs packages that are not installed "
                         f"({', '.join(missing)})", INSTALL_HINT)
    settings = _settings(address, port, auth, auth_file, url_prefix, history_file,
                         max_tasks, retention, enable_events)
    _name_process(settings.address, settings.port)  # (also hides --auth from `ps`)
    from fleet.engine.log import parse_level, setup_logging

    level = parse_level(loglevel)
    app = cli_ctx.load_app(required=False)
    setup_logging(socket.gethostname(), "dashboard", level, logfile)
    if auth_file and not _private(auth_file):
        import logging

        logging.getLogger("fleet.dashboard").warning(
            "dashboard: %s can be read by other users: chmod 600 it", auth_file)
    from fleet.dashboard.server import serve

    sys.exit(serve(app, settings, level))


def _settings(address: str, port: int, auth: str | None, auth_file: str | None,
              url_prefix: str, history_file: str | None, max_tasks: int, retention: float,
              enable_events: bool) -> DashboardSettings:
    from fleet.dashboard.auth import resolve_users
    from fleet.dashboard.settings import DashboardSettings, default_history_file

    settings = DashboardSettings(
        address=address, port=port, url_prefix=url_prefix,
        users=resolve_users(auth, auth_file),
        history_file=Path(history_file).expanduser() if history_file
        else default_history_file(),
        max_tasks=max_tasks, retention=retention * 3600.0, enable_events=enable_events)
    return settings.check()


def _private(path: str) -> bool:
    from fleet.dashboard.auth import file_is_private

    return file_is_private(path)


def _name_process(address: str, port: int) -> None:
    """`ps` shows `fleet dashboard ADDRESS:PORT` (and no longer the --auth password)."""
    import setproctitle

    setproctitle.setproctitle(f"fleet dashboard {address}:{port}")


COMMANDS = (dashboard,)
