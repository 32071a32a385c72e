"""What `fleet multi` remembers: one record per node it started, in a TOML state file.

A record holds everything needed to find, stop and start the node again (its full launch
command, working directory, pid file, log file, pid and create time), so no later command
needs the options given at start. The file is rewritten atomically under a file lock, and
the user's own config files are never written.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fleet.nodenames import format_node


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
    def from_toml(cls, name: str, data: dict[str, Any]) -> NodeRecord:
        return cls(name=name, argv=list(data.get("argv", [])), workdir=data.get("workdir", "."),
                   pidfile=data.get("pidfile", ""), logfile=data.get("logfile", ""),
                   pid=int(data.get("pid", 0)), create_time=float(data.get("create_time", 0.0)),
                   started=data.get("started", ""))


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
        import tomllib

        try:
            data = tomllib.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            from fleet.operator_errors import FleetError

            raise FleetError(f"cannot read multi's state file {self.path}: {exc}",
                             "move it away; `fleet multi start` writes a new one") from None
        nodes = data.get("nodes", {})
        return {name: NodeRecord.from_toml(name, value) for name, value in nodes.items()}

    def update(self, change: Callable[[dict[str, NodeRecord]], None]) -> dict[str, NodeRecord]:
        """Read, `change(records)` in place, write back: all under the lock."""
        from filelock import FileLock

        from fleet.daemon import ensure_directory

        ensure_directory(self.path.parent, purpose="fleet multi's state file")
        with FileLock(str(self.path) + ".lock"):
            records = self.load()
            change(records)
            self._write(records)
        return records

    def _write(self, records: dict[str, NodeRecord]) -> None:
        import tomli_w

        text = "# fleet multi's memory of the nodes it started; rewritten by fleet multi.\n"
        text += tomli_w.dumps({"nodes": {name: r.to_toml() for name, r in records.items()}})
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with open(temporary, "w") as stream:
            stream.write(text)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, self.path)

    def remember(self, records: Iterable[NodeRecord]) -> None:
        updates = {record.name: record for record in records}
        self.update(lambda known: known.update(updates))
