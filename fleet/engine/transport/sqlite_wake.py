"""Wake-ups for the SQLite broker: datagrams between processes of one machine.

SQLite cannot notify: a node used to look at the database every poll interval (50 ms), which
was most of a round trip on the embedded broker. Instead, every subscriber binds a Unix
datagram socket in Linux's abstract namespace (no file, gone when its process is) and
announces it with empty marker files in a directory next to the database, `<db>.wake/`:

    <db>.wake/q-<hash of queue>/<sid>     one per queue it wants wake-ups for
    <db>.wake/c-<hash of channel>/<sid>   and per broadcast channel it listens to

A writer that puts to a queue (or publishes on a channel) sends one byte, "q" (or "c"), to
the socket of every marker in that queue's (channel's) directory, without blocking. A marker
whose socket is gone (its process died) refuses the datagram and is removed by the sender.
The subscriber's socket is its `fileno()`, so the node's selector wakes at once.

Best effort by design: a datagram that cannot be sent (full buffer: the subscriber is
already woken) is skipped, and a node still reserves every poll interval, so a writer that
sends no wake-ups (another tool, another network namespace) is seen as before. Where the
socket or the markers cannot be made (no abstract sockets, a read-only directory) the
subscription polls as before. Anyone on the machine can send a stray byte: that only causes
one extra look at the database.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import secrets
import socket
from collections.abc import Iterable
from pathlib import Path

from fleet.files import make_directory, open_regular
from fleet.operator_errors import FleetError

#: Prefix of the abstract socket names (a leading NUL byte: no file in the filesystem).
_ABSTRACT = b"\0fleet-wake-"


def wake_dir(db_path: Path) -> Path:
    """The wake-up directory of a database (symlinks resolved: every process agrees)."""
    return Path(os.path.realpath(db_path) + ".wake")


def _entry_dir(root: Path, kind: str, name: str) -> Path:
    digest = hashlib.sha1(name.encode("utf-8"), usedforsecurity=False).hexdigest()[:16]
    return root / f"{kind}-{digest}"


def _mode_of(path: Path, default: int) -> int:
    try:
        return path.stat().st_mode & 0o777
    except OSError:
        return default


class WakeSocket:
    """A subscriber's socket and its markers; `open` returns None when it cannot be made."""

    def __init__(self, sock: socket.socket, markers: list[Path]):
        self.sock = sock
        self.markers = markers

    @classmethod
    def open(cls, db_path: Path, queues: Iterable[str], channels: Iterable[str]
             ) -> WakeSocket | None:
        root = wake_dir(db_path)
        sid = f"{os.getpid()}-{secrets.token_hex(6)}"
        markers = [_entry_dir(root, "q", q) / sid for q in dict.fromkeys(queues)]
        markers += [_entry_dir(root, "c", c) / sid for c in dict.fromkeys(channels)]
        if not markers:
            return None
        dir_mode = _mode_of(root.parent, 0o755)
        made: list[Path] = []
        try:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        except OSError:
            return None
        try:
            sock.bind(_ABSTRACT + sid.encode())
            sock.setblocking(False)
            for marker in markers:
                make_directory(marker.parent, dir_mode)
                # Exclusive and never through a link: the name is ours alone (random sid).
                os.close(open_regular(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644,
                                      "wake-up marker"))
                made.append(marker)
        except (OSError, FleetError):
            sock.close()
            for path in made:
                with contextlib.suppress(OSError):
                    path.unlink()
            return None
        return cls(sock, made)

    def fileno(self) -> int:
        return self.sock.fileno()

    def drain(self) -> set[bytes]:
        """Every kind of wake-up received since the last call (b"q", b"c")."""
        kinds: set[bytes] = set()
        while True:
            try:
                kinds.add(self.sock.recv(16))
            except OSError:  # BlockingIOError: nothing more
                return kinds

    def close(self) -> None:
        for path in self.markers:
            with contextlib.suppress(OSError):
                path.unlink()
        self.sock.close()


class WakeSender:
    """Sends wake-ups for one database; one unbound socket, made on first use."""

    def __init__(self, db_path: Path):
        self.db_path = db_path
        self._root: Path | None = None
        self._sock: socket.socket | None = None
        self._pid = 0

    def wake(self, kind: str, names: Iterable[str]) -> None:
        """Send `kind` ("q" or "c") to every subscriber of each of `names`."""
        if self._sock is None or self._pid != os.getpid():
            self._root = wake_dir(self.db_path)
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._sock.setblocking(False)
            self._pid = os.getpid()
        payload = kind.encode()
        for name in dict.fromkeys(names):
            try:
                entries = list(os.scandir(_entry_dir(self._root, kind, name)))
            except OSError:
                continue  # nobody ever subscribed to it
            for entry in entries:
                try:
                    self._sock.sendto(payload, _ABSTRACT + entry.name.encode())
                except ConnectionRefusedError:
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)  # its process is gone
                except OSError:
                    pass  # buffer full: already woken (best effort)

    def close(self) -> None:
        if self._sock is not None and self._pid == os.getpid():
            self._sock.close()
        self._sock = None
