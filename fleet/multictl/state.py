"""What `fleet multi` remembers: one record per node it started, in a TOML state file.

A record holds everything needed to find, stop and start the node again (its full launch
command, working directory, pid file, log file, pid and create time), so no later command
needs the options given at start. The file is rewritten atomically under a file lock, and
the user's own config files are never written.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet.daemon import MAX_PID
from fleet.files import check_directory, read_bytes, write_atomically
from fleet.nodenames import format_node
from fleet.operator_errors import ConfigError

#: A state file this big was not written by fleet multi (1000 nodes take about 1 MiB).
MAX_STATE_BYTES = 16 << 20


@dataclass
class NodeRecord:
    """What `start` remembers about a node, so no later command needs its options again."""

    name: str
    argv: list[str]  #: the full launch command, executable first
    workdir: str
    pidfile: str
    logfile: str  #: the template the node got (%i/%I still in it)
    pid: int = 0
    create_time: float = 0.0
    started: str = ""  #: ISO time of the last successful start

    @property
    def short(self) -> str:
        return self.name.partition("@")[0]

    @property
    def main_log(self) -> Path:
        return Path(format_node(self.logfile, self.name, 0))

    def to_toml(self) -> dict[str, Any]:
        return {"argv": self.argv, "workdir": self.workdir, "pidfile": self.pidfile,
                "logfile": self.logfile, "pid": self.pid, "create_time": self.create_time,
                "started": self.started}

    @classmethod
    def from_toml(cls, name: str, data: Any) -> NodeRecord:
        """A record read back from the state file; ValueError (saying which field is wrong)
        for anything fleet multi would not have written."""
        if not isinstance(data, dict):
            raise ValueError(f"[nodes.{name!r}] is not a table")
        unknown = set(data) - FIELDS.keys()
        if unknown:
            raise ValueError(f"[nodes.{name!r}] has unknown keys {sorted(unknown)}")
        values = {key: _checked(name, key, data.get(key, default))
                  for key, (_, default) in FIELDS.items()}
        return cls(name=name, **values)


#: Every field of a record in the state file: its type and its value when missing.
FIELDS: dict[str, tuple[Any, Any]] = {
    "argv": (list, []), "workdir": (str, "."), "pidfile": (str, ""), "logfile": (str, ""),
    "pid": (int, 0), "create_time": (float, 0.0), "started": (str, ""),
}


def _checked(name: str, key: str, value: Any) -> Any:
    kind = FIELDS[key][0]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    fine = isinstance(value, kind) and not isinstance(value, bool)
    if kind is list:
        fine = fine and all(isinstance(arg, str) for arg in value)
        fine = fine and bool(value)  # the command that starts the node
    elif kind is int:
        fine = fine and 0 <= value <= MAX_PID
    elif kind is float:
        fine = fine and math.isfinite(value)
    elif key in ("workdir", "pidfile"):
        fine = fine and bool(value) and "\0" not in value
    if not fine:
        raise ValueError(f"nodes.{name!r}.{key} = {value!r:.60} is not "
                         f"{_EXPECTED.get(key, 'a ' + kind.__name__)}")
    return list(value) if kind is list else value


_EXPECTED = {"argv": "a command (a list of strings)", "workdir": "a directory",
             "pidfile": "a file name", "pid": "a pid (a whole number)",
             "create_time": "a finite number"}


def record_for(node: Any, executable: str | None = None, workdir: Path | str | None = None
               ) -> NodeRecord:
    """The record (launch command, files) of a `fleet.multi.NodeSpec`."""
    directory = Path(workdir or os.getcwd()).absolute()
    worker = node.worker_argv()
    # abspath, not resolve: a virtualenv's python is a symlink that must stay one.
    python = os.path.abspath(executable or sys.executable)
    argv = [python, "-m", "fleet", worker[0], "--detach", *worker[1:]]
    pidfile = node.pidfile if node.pidfile.is_absolute() else directory / node.pidfile
    logfile = node.logfile if os.path.isabs(node.logfile) else \
        str(directory).replace("%", "%%") + "/" + node.logfile
    return NodeRecord(node.name, argv, str(directory), str(pidfile), logfile)


# -- the state file --------------------------------------------------------------------------


class StateFile:
    """multi's memory: one TOML table per node, rewritten atomically under a file lock, so
    concurrent multi commands never lose each other's updates or read half a file."""

    def __init__(self, path: Path | str | None = None):
        if path is None:
            from fleet.paths import multi_state_file

            path = multi_state_file()
        self.path = Path(path)

    def load(self) -> dict[str, NodeRecord]:
        """The records; {} when there is no state file. A file fleet multi would not have
        written is a ConfigError (exit 78) naming it and what to do."""
        import tomllib

        try:
            text = read_bytes(self.path, limit=MAX_STATE_BYTES + 1,
                              what="fleet multi's state file")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ConfigError(f"cannot read fleet multi's state file {self.path}: "
                              f"{exc.strerror}", "check its owner and mode") from None
        try:
            if len(text) > MAX_STATE_BYTES:
                raise ValueError(f"it is over {MAX_STATE_BYTES // 1048576} MiB")
            data = tomllib.loads(text.decode())
            nodes = data.get("nodes", {})
            if not isinstance(nodes, dict):
                raise ValueError("nodes is not a table")
            return {name: NodeRecord.from_toml(name, value) for name, value in nodes.items()}
        except (tomllib.TOMLDecodeError, UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise ConfigError(
                f"fleet multi's state file {self.path} is corrupt: {' '.join(str(exc).split())}",
                "move it away (the nodes it names keep running; stop them with their pid "
                "files or by pid); `fleet multi start` writes a new one") from None

    def update(self, change: Callable[[dict[str, NodeRecord]], None]) -> dict[str, NodeRecord]:
        """Read, `change(records)` in place, write back: all under the lock."""
        from filelock import FileLock

        from fleet.daemon import ensure_directory

        ensure_directory(self.path.parent, mode=0o700, purpose="fleet multi's state file")
        check_directory(self.path.parent, f"fleet multi's state file {self.path}")
        with FileLock(str(self.path) + ".lock", mode=0o600):
            records = self.load()
            change(records)
            self._write(records)
        return records

    def _write(self, records: dict[str, NodeRecord]) -> None:
        """Atomically, readable by its owner only: a record may hold a broker password."""
        import tomli_w

        text = "# fleet multi's memory of the nodes it started; rewritten by fleet multi.\n"
        text += tomli_w.dumps({"nodes": {name: r.to_toml() for name, r in records.items()}})
        write_atomically(self.path, text.encode(), 0o600, "fleet multi's state file")

    def remember(self, records: Iterable[NodeRecord]) -> None:
        updates = {record.name: record for record in records}
        self.update(lambda known: known.update(updates))
