"""The platform's daemon primitives: detaching from the terminal, dropping privileges
(uid/gid, umask), log files, pid files with locks, and systemd's notify socket.

How a `fleet worker --detach` node puts these together, and tells its launcher that it came
up, is fleet/worker_setup/detach.py.

Pid files are written for the operator and for `fleet multi`:
* written atomically (a temporary file, fully written and locked, hard-linked into place),
  so nobody ever reads a half-written pid;
* the pid on its own line, followed by the node name on the second line;
* locked (flock) for the node's lifetime: a pid file nobody holds a lock on is stale, whatever
  pid it contains, so a recycled pid is never mistaken for a running node;
* removed at exit only while it still holds our own pid.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import errno
import fcntl
import functools
import grp
import logging
import os
import pwd
import signal
from dataclasses import dataclass
from pathlib import Path

from fleet.operator_errors import EXIT_CANT_CREATE, FleetError, PermissionProblem, UsageError

log = logging.getLogger("fleet.daemon")

PR_SET_PDEATHSIG = 1
#: Set by a node restarting in place: "FD:PATH" of its pid file, still locked.
INHERITED_ENV = "FLEET_PIDFILE_FD"
DEFAULT_UMASK = 0o022


def ensure_directory(path: Path | str, mode: int = 0o755, purpose: str = "") -> Path:
    """Create `path` (and parents) if missing; report permission problems with the fix."""
    directory = Path(path)
    try:
        directory.mkdir(parents=True, exist_ok=True, mode=mode)
    except PermissionError:
        what = f" for {purpose}" if purpose else ""
        raise PermissionProblem(
            f"cannot create directory {directory}{what}: permission denied",
            f"create it with `sudo install -d -m {mode:o} -o $USER {directory}` "
            "or choose another path",
        ) from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise PermissionProblem(f"directory {directory} is not writable by this user",
                                f"fix its owner or mode (e.g. `sudo chown $USER {directory}`)"
                                " or choose another path")
    return directory


def open_log_file(path: Path | str, mode: int = 0o640) -> int:
    """Open (create) a log file for appending; return the fd. Parent dirs are created."""
    log_path = Path(path)
    ensure_directory(log_path.parent, purpose="log files")
    try:
        return os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, mode)
    except PermissionError:
        raise PermissionProblem(f"cannot write log file {log_path}: permission denied",
                                "fix its owner or mode, or choose another --logfile") from None


def log_tail(path: Path | str, lines: int = 10) -> list[str]:
    """The last `lines` lines of a log file (empty if it cannot be read)."""
    try:
        with open(path, "rb") as stream:
            stream.seek(0, os.SEEK_END)
            size = stream.tell()
            stream.seek(max(0, size - 8192))
            text = stream.read().decode(errors="replace")
    except OSError:
        return []
    return [line for line in text.splitlines() if line.strip()][-lines:]


# -- detaching from the terminal, and whose the process is -------------------------------------


def detach_from_terminal(log_fd: int, umask: int) -> None:
    """A new session (no controlling terminal), `umask`, stdin from /dev/null and stdout and
    stderr into the log file `log_fd` (closed here), so no startup error is ever lost."""
    os.setsid()
    os.umask(umask)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)


def parse_umask(text: str | None) -> int:
    """--umask 027 -> 0o027 (None: the default, 022)."""
    if text is None:
        return DEFAULT_UMASK
    try:
        value = int(text, 8)
    except ValueError:
        value = -1
    if not 0 <= value <= 0o777:
        raise UsageError(f"--umask {text}: not an octal mode", "e.g. --umask 022 or 027")
    return value


def resolve_ids(user: str | None, group: str | None) -> tuple[int | None, int | None]:
    """--uid/--gid (names or numbers) -> ids; a user's primary group if only --uid is given."""
    uid = gid = None
    if user:
        try:
            entry = pwd.getpwuid(int(user)) if user.isdigit() else pwd.getpwnam(user)
        except KeyError:
            raise UsageError(f"--uid {user}: no such user", "give a user name or number "
                             "that exists on this host") from None
        uid, gid = entry.pw_uid, entry.pw_gid
    if group:
        try:
            gid = grp.getgrgid(int(group)).gr_gid if group.isdigit() else grp.getgrnam(group).gr_gid
        except KeyError:
            raise UsageError(f"--gid {group}: no such group", "give a group name or number "
                             "that exists on this host") from None
    if (uid is not None or gid is not None) and os.geteuid() != 0 and \
            (uid not in (None, os.getuid()) or gid not in (None, os.getgid())):
        raise PermissionProblem("--uid/--gid need root", "run as root, or leave them out to "
                                "run as yourself")
    return uid, gid


def drop_privileges(uid: int | None, gid: int | None) -> None:
    """Become uid/gid (group first, while we may still change it)."""
    if gid is not None and gid != os.getgid():
        os.setgroups([gid])
        os.setgid(gid)
    if uid is not None and uid != os.getuid():
        if gid is None:
            os.setgroups([])
        os.setuid(uid)
        os.environ["HOME"] = pwd.getpwuid(uid).pw_dir


def give_to(path: Path | str, uid: int | None, gid: int | None) -> None:
    """chown `path` to the user (and group) the process is about to become, if any."""
    if uid is None and gid is None:
        return
    with contextlib.suppress(OSError):
        os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)


# -- pid files ---------------------------------------------------------------------------------


@dataclass
class PidFileContents:
    pid: int
    node: str | None = None


def read_pidfile(path: Path | str) -> PidFileContents | None:
    """The pid (and node name) in a pid file; None if missing, empty or garbage."""
    try:
        text = Path(path).read_text()
    except (FileNotFoundError, IsADirectoryError, PermissionError):
        return None
    lines = text.splitlines()
    if not lines or not lines[0].strip().isdigit():
        return None
    node = lines[1].strip() if len(lines) > 1 and lines[1].strip() else None
    return PidFileContents(int(lines[0].strip()), node)


def pidfile_is_locked(path: Path | str) -> bool:
    """True if some process holds the pid file's lock (so its node is running)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class PidFile:
    """A node's pid file: created atomically, locked while the node runs."""

    def __init__(self, path: Path | str, node: str = ""):
        self.path = Path(path).expanduser().absolute()
        self.node = node
        self._fd: int | None = None

    def acquire(self) -> None:
        ensure_directory(self.path.parent, purpose="pid files")
        if self._adopt_inherited():
            return
        for _attempt in range(5):
            if self._try_create():
                return
            self._check_existing()
        raise FleetError(f"could not create pid file {self.path} (it keeps changing)",
                         "is another node starting with the same --pidfile?",
                         exit_code=EXIT_CANT_CREATE)

    def _try_create(self) -> bool:
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fd = os.open(temporary, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, f"{os.getpid()}\n{self.node}\n".encode())
            os.fsync(fd)
            try:
                os.link(temporary, self.path)
            except FileExistsError:
                os.close(fd)
                return False
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        finally:
            with contextlib.suppress(OSError):
                temporary.unlink()
        self._fd = fd
        return True

    def _check_existing(self) -> None:
        """The pid file exists: refuse if its node runs, remove it if stale."""
        contents = read_pidfile(self.path)
        if pidfile_is_locked(self.path):
            pid = contents.pid if contents else "?"
            raise FleetError(
                f"pid file {self.path} is held by a running node (pid {pid})",
                "stop that node first (`fleet multi stop` or `kill -TERM "
                f"{pid}`), or give this one another --pidfile",
                exit_code=EXIT_CANT_CREATE,
            )
        if contents is not None and contents.pid == os.getpid():
            log.info("Taking over pid file %s (restarted in place)", self.path)
        elif contents is None:
            log.warning("Removing broken pid file %s (it held no pid)", self.path)
        else:
            log.warning("Removing stale pid file %s (pid %s is not a running node)",
                        self.path, contents.pid)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    def keep_across_exec(self) -> None:
        """Before a restart in place (exec, same pid): keep the file and its lock.

        The locked descriptor is inherited through exec (flock locks belong to the open
        file, not to the program), and $FLEET_PIDFILE_FD tells the new program which one it
        is; so the pid file never disappears and is never unlocked while the node restarts.
        """
        if self._fd is None:
            return
        os.set_inheritable(self._fd, True)
        os.environ[INHERITED_ENV] = f"{self._fd}:{self.path}"
        self._fd = None

    def _adopt_inherited(self) -> bool:
        """Take over the pid file our previous program image kept locked for us."""
        inherited = os.environ.pop(INHERITED_ENV, None)
        if not inherited:
            return False
        fd_text, _, path = inherited.partition(":")
        try:
            fd = int(fd_text)
            same = os.path.samestat(os.fstat(fd), os.stat(self.path))
        except (ValueError, OSError):
            return False
        contents = read_pidfile(self.path)
        if not same or path != str(self.path) or contents is None or \
                contents.pid != os.getpid():
            with contextlib.suppress(OSError):
                os.close(fd)
            return False
        os.set_inheritable(fd, False)
        self._fd = fd
        log.info("Kept pid file %s across the restart in place", self.path)
        return True

    def release(self) -> None:
        """Remove the pid file if it still holds our pid, then drop the lock."""
        if self._fd is None:
            return
        contents = read_pidfile(self.path)
        if contents is not None and contents.pid == os.getpid():
            with contextlib.suppress(FileNotFoundError):
                self.path.unlink()
        os.close(self._fd)
        self._fd = None


@functools.cache
def libc() -> ctypes.CDLL | None:
    """libc, looked up once (find_library is slow) and inherited by forked children."""
    libc_name = ctypes.util.find_library("c")
    return ctypes.CDLL(libc_name, use_errno=True) if libc_name else None


def set_parent_death_signal(signum: int = signal.SIGKILL) -> None:
    """Linux: have the kernel send `signum` to this process when its parent dies, so a pool
    child never outlives a node whose main process was SIGKILLed."""
    handle = libc()
    if handle is None:
        return
    if handle.prctl(PR_SET_PDEATHSIG, signum, 0, 0, 0) != 0:
        log.debug("prctl(PR_SET_PDEATHSIG) failed: %s", errno.errorcode.get(ctypes.get_errno()))


# -- systemd ---------------------------------------------------------------------------------

def sd_notify(state: str, socket_path: str | None = None) -> bool:
    """Send a state ("READY=1", "STATUS=...", "STOPPING=1") to systemd's notify socket.

    Does nothing (returns False) when not started by systemd with Type=notify, i.e. without
    $NOTIFY_SOCKET. Abstract socket names ("@name") are supported.
    """
    import socket

    address = socket_path or os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("Could not notify systemd at %s: %s", address, exc)
        return False
    return True


def watchdog_interval() -> float | None:
    """Seconds between WATCHDOG=1 pings if systemd's WatchdogSec= applies to us (half of it)."""
    usec = os.environ.get("WATCHDOG_USEC")
    pid = os.environ.get("WATCHDOG_PID")
    if not usec or (pid and pid.isdigit() and int(pid) != os.getpid()):
        return None
    try:
        return int(usec) / 2_000_000
    except ValueError:
        return None
