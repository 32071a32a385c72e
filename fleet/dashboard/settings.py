"""The dashboard's settings, declared once: defaults, checks and what they mean.

The CLI (`fleet dashboard`) fills a `DashboardSettings` from its flags; tests and the bench
build one directly. `check()` enforces the one rule that protects a fleet from its own
dashboard: it listens on a loopback address unless logins are required.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path

from fleet.operator_errors import UsageError
from fleet.paths import state_dir

DEFAULT_ADDRESS = "127.0.0.1"
DEFAULT_PORT = 5555
#: Names that always mean this machine (and only this machine).
LOOPBACK_NAMES = ("localhost", "localhost.localdomain", "ip6-localhost")


def default_history_file() -> Path:
    return state_dir() / "dashboard.db"


def is_loopback(address: str) -> bool:
    if address.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


def normalize_prefix(prefix: str | None) -> str:
    """'/fleet/', 'fleet' -> '/fleet'; '' or '/' -> ''."""
    text = (prefix or "").strip().strip("/")
    if any(ch in text for ch in "?#% \t\"'<>\\"):
        raise UsageError(f"--url-prefix {prefix!r} is not a plain path",
                         "use letters, digits, '-', '_', '.' and '/', e.g. /fleet")
    return f"/{text}" if text else ""


@dataclass
class DashboardSettings:
    address: str = DEFAULT_ADDRESS
    port: int = DEFAULT_PORT
    url_prefix: str = ""
    #: user -> password; empty: no login (then only a loopback address is allowed)
    users: dict[str, str] = field(default_factory=dict, repr=False)
    history_file: Path = field(default_factory=default_history_file)
    #: Tasks kept in the history (the oldest are forgotten first).
    max_tasks: int = 100_000
    #: Seconds of chart data (and offline nodes) kept.
    retention: float = 24 * 3600.0
    #: Seconds between two samples of the queue lengths (the queue chart).
    sample_interval: float = 5.0
    #: Ask nodes to send task events (every `events_interval` seconds, for nodes started
    #: later), like Flower does; off: only nodes started with -E are seen.
    enable_events: bool = True
    events_interval: float = 60.0
    #: Seconds a remote-control request from a page waits for the node's reply.
    control_timeout: float = 2.0

    def check(self) -> DashboardSettings:
        """Refuse settings that would expose the fleet (usage errors, exit 2)."""
        self.url_prefix = normalize_prefix(self.url_prefix)
        if not 0 <= self.port < 65536:
            raise UsageError(f"--port {self.port} is not a TCP port",
                             "use 1-65535 (0: any free port, shown in the log)")
        if self.max_tasks < 1:
            raise UsageError("--max-tasks must be at least 1")
        if not self.users and not is_loopback(self.address):
            raise UsageError(
                f"refusing to listen on {self.address} without authentication: anyone who "
                "reaches it could revoke tasks, purge queues and shut nodes down",
                "give --auth-file FILE (one USER:PASSWORD a line) or set "
                "FLEET_DASHBOARD_AUTH=USER:PASSWORD, or listen on 127.0.0.1")
        return self

    @property
    def base_url(self) -> str:
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"http://{host}:{self.port}{self.url_prefix}/"
