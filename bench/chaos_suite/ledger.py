"""The execution ledger: one JSON line per task execution event, in a file outside the
broker under test.

Each pool child opens the file once with O_APPEND and writes each line with a single
`os.write` (lines are far below PIPE_BUF), so lines from many processes never interleave and
a line is either there whole or not at all, whatever kills the process. A line:

    {"ev": "start" | "end", "id": task id, "try": retries so far, "task": name,
     "node": node name, "pid": child pid, "ppid": the node's main pid, "t": epoch seconds,
     ...}

"start" lines of a message with an eta add "eta"; "end" lines add "out" ("ok" or "retry");
a chord body's lines add "n" (how many header results it got).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: Environment variable naming the ledger file (set for the nodes by the harness).
LEDGER_ENV = "CHAOS_LEDGER"

_fd: int | None = None
_fd_pid = 0


def append(fields: dict) -> None:
    """Write one event line to the ledger named by $CHAOS_LEDGER (opened once per process)."""
    global _fd, _fd_pid
    if _fd is None or _fd_pid != os.getpid():
        _fd = os.open(os.environ[LEDGER_ENV], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        _fd_pid = os.getpid()
    os.write(_fd, (json.dumps(fields, separators=(",", ":")) + "\n").encode())


@dataclass(frozen=True)
class Execution:
    """One execution of one attempt of a task, as the ledger tells it."""

    id: str
    attempt: int
    task: str
    node: str
    pid: int
    ppid: int
    start: float
    end: float | None = None  #: None: it never finished (its process died, or was frozen)
    outcome: str | None = None
    eta: float | None = None  #: the message's eta, when it had one
    line: str = ""  #: the start line as written, for evidence

    @property
    def finished(self) -> bool:
        return self.end is not None


def read_lines(path: Path) -> Iterator[str]:
    """Every complete line of the ledger (a torn last line cannot happen with one write per
    line, but a line cut by a full disk is skipped rather than trusted)."""
    if not path.exists():
        return
    with open(path, encoding="utf-8") as ledger:
        for line in ledger:
            if line.endswith("\n"):
                yield line.rstrip("\n")


def executions(lines: Iterator[str] | list[str]) -> list[Execution]:
    """Pair start and end lines into executions (an end belongs to the start with the same
    task id, attempt and pid), in order of start time."""
    started: dict[tuple[str, int, int], dict] = {}
    result: dict[tuple[str, int, int], Execution] = {}
    for line in lines:
        event = json.loads(line)
        key = (event["id"], int(event["try"]), int(event["pid"]))
        if event["ev"] == "start":
            if key in started:  # the same child ran the same attempt again: a new execution
                _close(result, started.pop(key), key)
            started[key] = {**event, "line": line}
        elif event["ev"] == "end" and key in started:
            begin = started.pop(key)
            result[(*key[:2], key[2], begin["t"])] = _execution(begin, event)
    for key, begin in started.items():
        _close(result, begin, key)
    return sorted(result.values(), key=lambda e: (e.start, e.pid))


def _close(result: dict, begin: dict, key: tuple) -> None:
    result[(*key[:2], key[2], begin["t"])] = _execution(begin, None)


def _execution(begin: dict, end: dict | None) -> Execution:
    return Execution(begin["id"], int(begin["try"]), begin["task"], begin["node"],
                     int(begin["pid"]), int(begin["ppid"]), float(begin["t"]),
                     float(end["t"]) if end else None, end.get("out") if end else None,
                     begin.get("eta"), begin["line"])
