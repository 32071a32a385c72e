"""`fleet worker --check`: one line saying whether a node is consuming (and an exit code),
for operators, container HEALTHCHECKs and monitoring. The logic is fleet.engine.health."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from fleet.operator_errors import EXIT_BROKER, EXIT_FAILURE, EXIT_OK

if TYPE_CHECKING:
    from fleet.cli.context import CliContext
    from fleet.engine.app import Fleet


def run_check(cli_ctx: CliContext, app: Fleet, nodename: str, pidfile: str | None,
              as_json: bool) -> int:
    """Print the node's health; return 0 (consuming), 1 (not consuming) or 75 (the broker
    cannot be reached, so nobody can tell)."""
    from fleet.daemon import read_pidfile
    from fleet.engine import health

    pid = None
    if pidfile:
        contents = read_pidfile(pidfile)
        if contents is None:
            result = health.Health(nodename, health.NOT_CONSUMING,
                                   f"no running node: the pid file {pidfile} is missing or empty")
            return _render(cli_ctx, result, as_json)
        pid = contents.pid
    try:
        broker = app.broker
    except Exception as exc:  # an unreachable broker at connect time
        result = health.Health(nodename, health.UNKNOWN, f"cannot reach the broker ({exc})", pid)
    else:
        result = health.check_node(broker, nodename, app.conf.worker_heartbeat_timeout, pid)
    return _render(cli_ctx, result, as_json)


def _render(cli_ctx: CliContext, result, as_json: bool) -> int:
    from fleet.engine import health

    if as_json:
        cli_ctx.echo(json.dumps(result.to_dict(), indent=2, sort_keys=True))
    else:
        colour = {"OK": "green", "UNKNOWN": "yellow"}.get(result.status, "red")
        cli_ctx.echo(f"{result.node}: {cli_ctx.style(result.status, fg=colour)}: "
                     f"{result.detail}")
    if result.status == health.OK:
        return EXIT_OK
    return EXIT_BROKER if result.status == health.UNKNOWN else EXIT_FAILURE
