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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from fleet.files import make_directory, new_temporary, open_regular, read_bytes
from fleet.operator_errors import (
    EXIT_CANT_CREATE,
    ConfigError,
    FleetError,
    PermissionProblem,
    UsageError,
)

log = logging.getLogger("fleet.daemon")

PR_SET_PDEATHSIG = 1
#: Linux never hands out pids above 2**22 (pid_max's ceiling); anything larger is garbage.
MAX_PID = 1 << 22
#: Set by a node restarting in place: "FD:PATH" of its pid file, still locked.
INHERITED_ENV = "FLEET_PIDFILE_FD"
DEFAULT_UMASK = 0o022


def ensure_directory(path: Path | str, mode: int = 0o755, purpose: str = "",
                     owner: tuple[int | None, int | None] = (None, None)) -> Path:
    """Create `path` (and parents) if missing; report permission problems with the fix.

    As root a directory is only created in a parent no other user can write, and a new one is
    handed to `owner` (fleet.files.make_directory)."""
    directory = Path(path)
    try:
        make_directory(directory, mode, purpose, owner)
    except PermissionError:
        what = f" for {purpose}" if purpose else ""
        raise PermissionProblem(
            f"cannot create directory {directory}{what}: permission denied",
            f"create it with `sudo install -d -m {mode:o} -o $USER {directory}` "
            "or choose another path",
        ) from None
    if not os.access(directory, os.W_OK | os.X_OK, effective_ids=True):
        raise PermissionProblem(f"directory {directory} is not writable by this user",
                                f"fix its owner or mode (e.g. `sudo chown $USER {directory}`)"
                                " or choose another path")
    return directory


def open_log_file(path: Path | str, mode: int = 0o640) -> int:
    """Open (create) a log file for appending; return the fd. Parent dirs are created.

    Never through a symbolic link, and as root never in a directory another user can write
    (fleet.files)."""
    log_path = Path(path)
    ensure_directory(log_path.parent, purpose="log files")
    try:
        return open_regular(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, mode, "log file")
    except PermissionError:
        raise PermissionProblem(f"cannot write log file {log_path}: permission denied",
                                "fix its owner or mode, or choose another --logfile") from None


def log_tail(path: Path | str, lines: int = 10) -> list[str]:
    """The last `lines` lines of a log file (empty if it cannot be read, is a link or is not
    a regular file: root never prints a file a user pointed a log name at)."""
    try:
        fd = open_regular(path, os.O_RDONLY, what="log file")
    except (OSError, FleetError):
        return []
    try:
        size = os.fstat(fd).st_size
        os.lseek(fd, max(0, size - 8192), os.SEEK_SET)
        text = os.read(fd, 8192).decode(errors="replace")
    except OSError:
        return []
    finally:
        os.close(fd)
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
    """Become uid/gid for good: real, effective and saved ids, and supplementary groups.

    With a user, its groups (initgroups, with `gid` or its primary group); with a group
    alone, that group only: the launcher's supplementary groups never stay (also when `gid`
    is the launcher's own). Checked afterwards: if root could be regained, we stop here.
    Only root changes anything (`resolve_ids` refuses ids that need root to anyone else)."""
    if (uid is None and gid is None) or os.geteuid() != 0:
        return
    user = pwd.getpwuid(uid) if uid is not None else None
    group = gid if gid is not None else user.pw_gid  # type: ignore[union-attr]
    if user is not None:
        os.initgroups(user.pw_name, group)
    else:
        os.setgroups([group])
    os.setresgid(group, group, group)
    if user is not None:
        os.setresuid(user.pw_uid, user.pw_uid, user.pw_uid)
        os.environ["HOME"] = user.pw_dir
        os.environ["USER"] = os.environ["LOGNAME"] = user.pw_name
    _check_dropped(uid, group)


def _check_dropped(uid: int | None, gid: int) -> None:
    if os.getresgid() != (gid, gid, gid) or (uid is not None and (
            os.getresuid() != (uid, uid, uid) or (uid != 0 and _can_become_root()))):
        raise PermissionProblem("could not drop privileges for good",
                                "run the node as the user directly instead of --uid/--gid")


def _can_become_root() -> bool:
    try:
        os.setuid(0)
    except PermissionError:
        return False
    return True


@contextlib.contextmanager
def acting_as(uid: int | None, gid: int | None) -> Iterator[None]:
    """Root only: act as `uid` (its groups, or `gid`) towards the file system for a while,
    then be root again, so the files a node is given are created by their user: nothing is
    chowned, and a link the user planted only reaches what the user can reach anyway.
    Without a uid, or when not root, nothing changes (the files are written as who we are)."""
    if uid is None or os.geteuid() != 0:
        yield
        return
    user = pwd.getpwuid(uid)
    group = gid if gid is not None else user.pw_gid
    saved_groups, saved_gid = os.getgroups(), os.getegid()
    os.setgroups(os.getgrouplist(user.pw_name, group))
    os.setegid(group)
    os.seteuid(uid)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(saved_gid)
        os.setgroups(saved_groups)


def give_to(fd: int, uid: int | None, gid: int | None) -> None:
    """fchown the open file `fd` to the user (and group) the process is about to become."""
    if uid is None and gid is None:
        return
    with contextlib.suppress(OSError):
        os.fchown(fd, -1 if uid is None else uid, -1 if gid is None else gid)


# -- pid files ---------------------------------------------------------------------------------


@dataclass
class PidFileContents:
    pid: int
    node: str | None = None


def read_pidfile(path: Path | str) -> PidFileContents | None:
    """The pid (and node name) in a pid file; None if missing, unreadable, a link, not a
    regular file, or garbage (anything but a positive decimal pid on the first line)."""
    try:
        text = read_bytes(path, limit=4096, what="pid file").decode("utf-8", "replace")
    except (OSError, FleetError):
        return None
    lines = text.splitlines()
    first = lines[0].strip() if lines else ""
    if not (first.isascii() and first.isdigit()) or not 0 < int(first) <= MAX_PID:
        return None
    node = lines[1].strip() if len(lines) > 1 and lines[1].strip() else None
    return PidFileContents(int(first), node)


def pidfile_is_locked(path: Path | str) -> bool:
    """True if some process holds the pid file's lock (so its node is running)."""
    try:
        fd = open_regular(path, os.O_RDONLY, what="pid file")
    except (OSError, FleetError):
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
        with new_temporary(self.path, 0o644, "pid file") as (fd, temporary):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            os.write(fd, f"{os.getpid()}\n{self.node}\n".encode())
            os.fsync(fd)
            try:
                os.link(temporary, self.path)  # never replaces: only one of us wins
            except FileExistsError:
                return False
            self._fd = os.dup(fd)  # the lock belongs to the open file: the dup keeps it
            os.set_inheritable(self._fd, False)
        return True

    def _check_existing(self) -> None:
        """The pid file exists: refuse if its node runs or it is not a pid file (a link,
        garbage: the path may name a file that is not ours), remove it if stale."""
        contents = read_pidfile(self.path)
        if pidfile_is_locked(self.path):
            pid = contents.pid if contents else "?"
            raise FleetError(
                f"pid file {self.path} is held by a running node (pid {pid})",
                "stop that node first (`fleet multi stop` or `kill -TERM "
                f"{pid}`), or give this one another --pidfile",
                exit_code=EXIT_CANT_CREATE,
            )
        if os.path.islink(self.path):
            raise FleetError(f"pid file {self.path} is a symbolic link; fleet never writes "
                             "through one", f"remove it (`rm {self.path}`) or give another "
                             "--pidfile", exit_code=EXIT_CANT_CREATE)
        if contents is None:
            if not self.path.exists():
                return  # gone meanwhile: try again
            raise ConfigError(f"{self.path} is not a pid file fleet wrote (it holds no pid)",
                              "check --pidfile; if it is an old pid file, remove it")
        if contents.pid == os.getpid():
            log.info("Taking over pid file %s (restarted in place)", self.path)
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
