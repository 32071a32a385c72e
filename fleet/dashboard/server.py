"""Running the dashboard: uvicorn on the configured address, until TERM or INT.

TERM and INT only set uvicorn's exit flag (a second INT forces the exit); its loop then
stops accepting, lets open requests finish within GRACE seconds, runs the shutdown (the
ingester stops, the history is closed) and `serve` returns 0. (uvicorn itself would raise
the signal again at the end, so the process would die of it instead of exiting 0.) Open event
streams would keep a graceful shutdown waiting forever, so they watch the same flag and end.
Logs go through the root logger in fleet's format; uvicorn's access log is at debug level
only (it would name every page and API call), and no line ever holds a password.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
from collections.abc import Iterator

import uvicorn

from fleet.daemon import sd_notify
from fleet.dashboard.app import create_app
from fleet.dashboard.settings import DashboardSettings
from fleet.engine.app import Fleet
from fleet.engine.transport import mask_url
from fleet.operator_errors import FleetError

log = logging.getLogger("fleet.dashboard")

#: Seconds open requests get to finish once TERM or INT arrived.
GRACE = 3


class _Server(uvicorn.Server):
    """uvicorn's server, whose exit flag the event streams can read, and which tells
    systemd (Type=notify) when it serves and when it stops."""

    status = ""

    def stopping(self) -> bool:
        return bool(self.should_exit)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started:
            sd_notify(f"READY=1\nSTATUS={self.status}")

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        sd_notify("STOPPING=1")
        await super().shutdown(sockets)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        """Record TERM and INT with uvicorn's own handler (it sets the exit flag); restore
        the previous handlers afterwards, without raising the signal again."""
        previous = {sig: signal.signal(sig, self.handle_exit)
                    for sig in (signal.SIGTERM, signal.SIGINT)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def listen_socket(settings: DashboardSettings) -> socket.socket:
    """The listening socket, or a FleetError saying why it cannot be had."""
    family = socket.AF_INET6 if ":" in settings.address else socket.AF_INET
    try:
        sock = socket.create_server((settings.address, settings.port), family=family,
                                    reuse_port=False)
    except OSError as exc:
        raise FleetError(f"cannot listen on {settings.address}:{settings.port}: "
                         f"{exc.strerror or exc}",
                         "another program may use the port: choose one with --port, or "
                         "check --address") from None
    # Accepted connections inherit it: a response's headers and body go out at once, not
    # 40 ms apart (Nagle's algorithm against the client's delayed ACK on keep-alive).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def serve(fleet_app: Fleet, settings: DashboardSettings, log_level: int = logging.INFO) -> int:
    """Serve until TERM or INT; returns the exit code (0 after a requested stop)."""
    sock = listen_socket(settings)
    settings.port = sock.getsockname()[1]  # (--port 0: the one the kernel chose)
    application = create_app(fleet_app, settings)
    board = application.state.dashboard
    config = uvicorn.Config(application, host=settings.address, port=settings.port,
                            log_config=None, log_level=log_level, access_log=False,
                            lifespan="on", timeout_graceful_shutdown=GRACE,
                            server_header=False, proxy_headers=False)
    server = _Server(config)
    server.status = f"serving {settings.base_url}"
    board.stopping = server.stopping
    logins = f"{len(settings.users)} user(s)" if settings.users else "no logins (loopback only)"
    log.info("dashboard: serving %s for broker %s; %s; history %s (at most %d tasks)",
             settings.base_url, mask_url(fleet_app.broker_url), logins, settings.history_file,
             settings.max_tasks)
    server.run(sockets=[sock])
    if not server.started:
        return 1
    log.info("dashboard: stopped")
    return 0

