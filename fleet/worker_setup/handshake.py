"""The readiness handshake: how a detached node tells whoever launched it that it came up, or
why not. Both ends are here: the node's (`Handshake`) and the launcher's (`Outcome`,
`read_outcome`), used by `fleet worker --detach` alone and by `fleet multi start`.

The readiness pipe carries lines: `ready PID`, `failed REASON` (the node's own words),
`exited STATUS` (how it died). End of file without `ready` means the node did not come up.
A launcher hands the pipe's write end to the node in $FLEET_READY_FD.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from dataclasses import dataclass, field

READY_ENV = "FLEET_READY_FD"


@dataclass
class Outcome:
    """What the readiness pipe said about one node."""

    ready: bool = False
    pid: int | None = None
    reason: str = ""  #: the node's own failure message, if it gave one
    status: str = ""  #: how it ended: "exited with code 4", "killed by signal 9 (KILL)"
    lines: list[str] = field(default_factory=list)

    def describe(self) -> str:
        parts = [part for part in (self.status, self.reason) if part]
        return "; ".join(parts) or "it ended without saying why"

    def feed(self, line: str) -> None:
        """Take one line of the protocol (first `ready` or failure wins)."""
        self.lines.append(line)
        kind, _, rest = line.partition(" ")
        if kind == "ready" and not self.status:
            self.ready = True
            self.pid = int(rest) if rest.strip().isdigit() else None
        elif kind == "failed" and not self.ready:
            self.reason = rest.strip()
        elif kind == "exited" and not self.ready:
            self.status = rest.strip()


def read_outcome(fd: int, deadline: float | None = None) -> Outcome:
    """Read the readiness pipe `fd` until end of file (or `deadline`, monotonic)."""
    outcome = Outcome()
    buffer = b""
    while True:
        wait = None if deadline is None else max(0.0, deadline - time.monotonic())
        readable, _, _ = select.select([fd], [], [], wait)
        if not readable:
            break
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            outcome.feed(line.decode(errors="replace"))
        if outcome.ready:  # the node's pool children may hold the pipe open: don't wait
            return outcome
    if buffer:
        outcome.feed(buffer.decode(errors="replace"))
    return outcome


def write_line(fd: int, line: str) -> None:
    """Send one line of the protocol (a reader that went away is not our problem)."""
    with contextlib.suppress(OSError):
        os.write(fd, (line + "\n").encode())


class Handshake:
    """The node's end of the readiness pipe: say `ready` once, or why it failed."""

    def __init__(self, fd: int | None):
        self.fd = fd

    def ready(self) -> None:
        self._send("ready")

    def failed(self, reason: str) -> None:
        from fleet.masking import mask_text  # the launcher prints it: no password in clear

        self._send("failed " + mask_text(" ".join(reason.split())))

    def _send(self, line: str) -> None:
        if self.fd is None:
            return
        write_line(self.fd, line)
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.fd = None
