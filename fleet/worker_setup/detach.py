"""`fleet worker --detach`: become a daemon, and tell the launcher whether the node came up.

    launcher (P0) --fork--> session leader (P1) --fork--> node (P2)

* P0 is the process the user (or `fleet multi`) ran. It forks and, unless a launcher already
  handed it a readiness pipe in $FLEET_READY_FD, waits on that pipe itself and prints the
  outcome (so `fleet worker --detach` alone also says "ready" or why not, with a non-zero
  exit code on failure).
* P1 starts a new session (no controlling terminal), sets the umask, points stdin at
  /dev/null and stdout/stderr at the node's log file (startup errors land there, never in
  /dev/null), drops privileges (--uid/--gid), forks the node and waits until the node says
  "ready" on an internal pipe or dies; it then reports `ready PID` or the node's exit status
  on the readiness pipe and exits.
* P2 becomes its own process-group leader (so `fleet multi kill` can SIGKILL the whole node
  with killpg), keeps the working directory (a detached node must still import `-A proj`
  from where it was started; celery's chdir to / broke exactly that) and runs the node.

The readiness pipe carries lines: `ready PID`, `failed REASON` (the node's own words),
`exited STATUS` (how it died). End of file without `ready` means the node did not come up.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import select
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from fleet.daemon import ensure_directory, open_log_file
from fleet.operator_errors import PermissionProblem, UsageError
from fleet.signals import describe_wait_status

READY_ENV = "FLEET_READY_FD"
DEFAULT_UMASK = 0o022


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


class Handshake:
    """The node's end of the readiness pipe: say `ready` once, or why it failed."""

    def __init__(self, fd: int | None):
        self.fd = fd

    def ready(self) -> None:
        self._send("ready")

    def failed(self, reason: str) -> None:
        self._send("failed " + " ".join(reason.split()))

    def _send(self, line: str) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.write(self.fd, (line + "\n").encode())
            os.close(self.fd)
        self.fd = None


@dataclass
class DetachOptions:
    logfile: Path  #: the main process's log file (stdout and stderr go there)
    uid: str | None = None
    gid: str | None = None
    umask: int = DEFAULT_UMASK
    nodename: str = ""
    #: Directories to create (and hand to --uid) before privileges are dropped.
    directories: list[Path] = field(default_factory=list)


def detach(options: DetachOptions) -> Handshake:
    """Detach this process; returns only in the node process (P2), with its handshake.

    Errors the operator can fix (log file not writable, unknown user) are raised here, in
    P0, before anything forks: they reach the terminal (or `fleet multi`) directly.
    """
    uid, gid = resolve_ids(options.uid, options.gid)
    for directory in options.directories:
        created = not directory.exists()
        ensure_directory(directory)
        if created:  # only what we made: never chown an existing /var/log to the node's user
            _own(directory, uid, gid)
    log_fd = open_log_file(options.logfile)
    _own(options.logfile, uid, gid)
    inherited = os.environ.pop(READY_ENV, None)
    if inherited is not None:
        report_fd = _checked_fd(inherited)
        read_fd = None
    else:
        read_fd, report_fd = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    if os.fork():  # P0
        if read_fd is None:
            os._exit(0)  # our launcher reads the pipe itself
        os.close(report_fd)
        os.close(log_fd)
        _launcher_exit(read_fd, options)
    if read_fd is not None:
        os.close(read_fd)
    return _session_leader(options, log_fd, report_fd, uid, gid)


def _checked_fd(text: str) -> int:
    try:
        fd = int(text)
        os.fstat(fd)
    except (ValueError, OSError):
        raise UsageError(f"${READY_ENV}={text!r} is not an open file descriptor",
                         f"unset {READY_ENV}; fleet multi sets it for the nodes it starts"
                         ) from None
    return fd


def _launcher_exit(read_fd: int, options: DetachOptions) -> None:
    """P0 of a standalone `fleet worker --detach`: report the node's outcome and exit."""
    outcome = read_outcome(read_fd)
    if outcome.ready:
        print(f"{options.nodename}: ready (pid {outcome.pid}), logging to {options.logfile}")
        sys.stdout.flush()
        os._exit(0)
    print(f"fleet: node {options.nodename} did not start: {outcome.describe()}",
          file=sys.stderr)
    tail = log_tail(options.logfile)
    if tail:
        print(f"last lines of {options.logfile}:", file=sys.stderr)
        print("\n".join(f"    {line}" for line in tail), file=sys.stderr)
    sys.stderr.flush()
    os._exit(1)


def _session_leader(options: DetachOptions, log_fd: int, report_fd: int, uid: int | None,
                    gid: int | None) -> Handshake:
    """P1: new session, umask, stdio, privileges; fork the node and report on it."""
    os.setsid()
    os.umask(options.umask)
    _redirect_stdio(log_fd)
    drop_privileges(uid, gid)
    node_read, node_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # P2, the node
        os.close(node_read)
        os.close(report_fd)
        with contextlib.suppress(OSError):
            os.setpgid(0, 0)
        return Handshake(node_write)
    os.close(node_write)
    outcome = read_outcome(node_read)
    if outcome.ready:
        _write(report_fd, f"ready {pid}")
    else:
        _, status = os.waitpid(pid, 0)
        if outcome.reason:
            _write(report_fd, f"failed {outcome.reason}")
        _write(report_fd, f"exited {describe_wait_status(status)}")
    os._exit(0)


def _write(fd: int, line: str) -> None:
    with contextlib.suppress(OSError):
        os.write(fd, (line + "\n").encode())


def _redirect_stdio(log_fd: int) -> None:
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)


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


def _own(path: Path | str, uid: int | None, gid: int | None) -> None:
    if uid is None and gid is None:
        return
    with contextlib.suppress(OSError):
        os.chown(path, -1 if uid is None else uid, -1 if gid is None else gid)


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


def detach_worker(hostname: str, logfile: str | None, pidfile: str | None, detached: bool,
                  uid: str | None, gid: str | None,
                  umask: str | None) -> tuple[Handshake, str, str] | None:
    """`fleet worker --detach ...`: detach with the node's files; returns (in the node) its
    handshake and the log and pid file templates it must use (defaults filled in).

    Without --detach (--uid/--gid/--umask alone, as after a restart in place): applies what
    still can be and returns None."""
    from fleet.nodenames import format_node, host_format
    from fleet.paths import default_node_files

    if not detached:
        return _apply_in_place(uid, gid, umask)
    nodename = host_format(hostname)
    default_pid, default_log = default_node_files()
    for option, given, default in (("--logfile", logfile, default_log),
                                   ("--pidfile", pidfile, default_pid)):
        if not given:
            _add_to_own_argv(f"{option}={default}")
    logfile = os.path.abspath(os.path.expanduser(logfile or default_log))
    pidfile = os.path.abspath(os.path.expanduser(pidfile or default_pid))
    main_log = Path(format_node(logfile, nodename, 0))
    pid_path = Path(format_node(pidfile, nodename, 0))
    options = DetachOptions(main_log, uid, gid, parse_umask(umask), nodename,
                            directories=[main_log.parent, pid_path.parent])
    return detach(options), logfile, pidfile


def _add_to_own_argv(argument: str) -> None:
    """A default chosen here must survive a restart in place, which re-runs sys.argv
    without --detach (and so without these defaults)."""
    cut = sys.argv.index("--") if "--" in sys.argv else len(sys.argv)
    sys.argv.insert(cut, argument)


def _apply_in_place(uid: str | None, gid: str | None, umask: str | None) -> None:
    """Without --detach: a node restarted in place (HUP) runs the same command minus
    --detach, as the user it already became; anything else needs --detach."""
    user, group = resolve_ids(uid, gid)
    if user not in (None, os.getuid()) or group not in (None, os.getgid()):
        raise UsageError("--uid and --gid only apply with --detach",
                         "add --detach, or run the node as the user you want")
    if umask is not None:
        os.umask(parse_umask(umask))


def parse_umask(text: str | None) -> int:
    if text is None:
        return DEFAULT_UMASK
    try:
        value = int(text, 8)
    except ValueError:
        value = -1
    if not 0 <= value <= 0o777:
        raise UsageError(f"--umask {text}: not an octal mode", "e.g. --umask 022 or 027")
    return value
