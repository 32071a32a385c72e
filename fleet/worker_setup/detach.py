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
  on the readiness pipe (fleet.worker_setup.handshake) and exits.
* P2 becomes its own process-group leader (so `fleet multi kill` can SIGKILL the whole node
  with killpg), keeps the working directory (a detached node must still import `-A proj`
  from where it was started; celery's chdir to / broke exactly that) and runs the node.

The steps themselves (a new session, privileges, log files) are fleet.daemon's primitives.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

from fleet.daemon import (
    DEFAULT_UMASK,
    acting_as,
    detach_from_terminal,
    drop_privileges,
    ensure_directory,
    give_to,
    log_tail,
    open_log_file,
    parse_umask,
    resolve_ids,
)
from fleet.operator_errors import PermissionProblem, UsageError
from fleet.paths import hand_on_state_dir
from fleet.signals import describe_wait_status
from fleet.worker_setup.handshake import READY_ENV, Handshake, read_outcome, write_line


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
    log_fd = prepare_node_files(options, uid, gid)
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


def prepare_node_files(options: DetachOptions, uid: int | None, gid: int | None) -> int:
    """Before anything forks, while still root: the node's directories, its open log file,
    and the state directory it must share with us; returns the log file's descriptor.

    For a node that runs as another user (--uid), its files are made as that user
    (`acting_as`): a link the user planted in its own log directory reaches nothing the user
    could not reach anyway, and nothing needs a chown. Only a missing directory in a place
    the user cannot write (/var/log/fleet) is made by root, and handed over by descriptor."""
    if uid is not None:
        hand_on_state_dir()
    for directory in options.directories:
        try:
            ensure_directory(directory, owner=(uid, gid))
        except PermissionProblem:
            if uid is None:
                raise
            with acting_as(uid, gid):  # in the user's own directory: the user makes it
                ensure_directory(directory)
    with acting_as(uid, gid):
        log_fd = open_log_file(options.logfile)
    if uid is None:
        give_to(log_fd, None, gid)
    return log_fd


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
    detach_from_terminal(log_fd, options.umask)
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
        write_line(report_fd, f"ready {pid}")
    else:
        _, status = os.waitpid(pid, 0)
        if outcome.reason:
            write_line(report_fd, f"failed {outcome.reason}")
        write_line(report_fd, f"exited {describe_wait_status(status)}")
    os._exit(0)


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
