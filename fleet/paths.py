"""Where fleet keeps things on disk: the state directory and the default file locations.

One module owns these so that the CLI, the multi controller, a node and the embedded broker
always agree on a path (a node and the CLI that started it must open the same SQLite broker).
Nothing here creates a file or a directory; callers do, with the modes they need.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Pid and log file templates for root (the node name and process index are expanded later).
ROOT_PIDFILE = "/run/fleet/%n.pid"
ROOT_LOGFILE = "/var/log/fleet/%n%I.log"
ROOT_STATE_DIR = Path("/var/lib/fleet")


def state_dir() -> Path:
    """Where fleet keeps per-user state: the default broker, multi's records, logs.

    `$FLEET_STATE_DIR` if set; as root `/var/lib/fleet`; otherwise `$XDG_STATE_HOME/fleet`
    (default `~/.local/state/fleet`).
    """
    explicit = os.environ.get("FLEET_STATE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    if os.geteuid() == 0:
        return ROOT_STATE_DIR
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base).expanduser() / "fleet"


def hand_on_state_dir() -> Path:
    """Pin the state directory in $FLEET_STATE_DIR before becoming another user (--uid): after
    the switch it would follow that user's HOME, and a node would use another embedded
    broker than the root CLI that started it (and that later asks it)."""
    directory = state_dir()
    os.environ["FLEET_STATE_DIR"] = str(directory)
    return directory


def default_broker_db() -> Path:
    """The embedded SQLite broker's file when no broker is configured."""
    return state_dir() / "broker.db"


def multi_state_file() -> Path:
    """Where `fleet multi` remembers the nodes it started."""
    return state_dir() / "multi.toml"


def default_node_files(is_root: bool | None = None) -> tuple[str, str]:
    """The --pidfile and --logfile templates used when none is given (not created here).

    Root gets the system locations; anyone else the per-user state directory, so multi works
    without root (celery's /var/run/celery defaults did not). A `%` in the state directory is
    doubled, so the node-name expansion reads it as a literal `%`.
    """
    if is_root is None:
        is_root = os.geteuid() == 0
    if is_root:
        return ROOT_PIDFILE, ROOT_LOGFILE
    base = str(state_dir()).replace("%", "%%")
    return f"{base}/run/%n.pid", f"{base}/log/%n%I.log"
