"""The `fleet multi` controller: start nodes detached and verified, remember them, find them
again and signal them safely, stop them with a deadline.

This module never prints: every step is reported as an `Event` to a callback, and each
command returns data (the CLI in fleet/cli_multi.py renders both). Nodes come in as
`NodeSpec`s (from fleet.multi, or later from a config file) or as `NodeRecord`s read back
from the state file, so nothing here depends on how a command line looked.

Safety rules (celery multi signalled whatever pid a pid file held):
* a node is "ours" only if its process is alive (not a zombie), is a fleet node of that name
  (its title or command line says so), and either holds its pid file's lock or started when
  the state file says it did;
* a pid file whose process is gone, or is something else, is stale: reported and removed;
  the process it names is never signalled.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import selectors
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil

from fleet.daemon import pidfile_is_locked, read_pidfile
from fleet.detach import READY_ENV, Outcome, log_tail
from fleet.nodenames import format_node
from fleet.signals import signal_name

RUNNING, STOPPED, STALE, NOT_OURS = "running", "stopped", "stale pid file", "not ours"
DEFAULT_START_TIMEOUT = 60.0
KILL_WAIT = 5.0  #: after SIGKILL, how long to wait for the kernel to finish the job
PROGRESS_EVERY = 1.0
START_PROGRESS_EVERY = 2.0
CREATE_TIME_SLACK = 1.0  #: seconds; psutil's create_time is rounded to clock ticks


@dataclass(frozen=True)
class Event:
    """One thing that happened to one node, for the CLI to render."""

    node: str
    kind: str  #: ok, failed, running, signal, down, killed, stale, waiting, info
    text: str = ""
    details: tuple[str, ...] = ()  #: e.g. the last lines of the node's log


Report = Callable[[Event], None]


def _ignore(event: Event) -> None:
    return None


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
            from fleet.engine.transport import state_dir

            path = state_dir() / "multi.toml"
        self.path = Path(path)

    def load(self) -> dict[str, NodeRecord]:
        import tomllib

        try:
            data = tomllib.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            from fleet.errors import FleetError

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


# -- finding a node's process safely ---------------------------------------------------------


@dataclass
class NodeState:
    """Where a node stands right now."""

    record: NodeRecord
    state: str
    pid: int | None = None
    process: psutil.Process | None = None
    detail: str = ""

    @property
    def running(self) -> bool:
        return self.state == RUNNING


def is_node_process(process: psutil.Process, name: str) -> bool:
    """True if `process` is the main process of fleet node `name` (by title or argv)."""
    try:
        if process.status() == psutil.STATUS_ZOMBIE:
            return False
        argv = process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False
    if f" {' '.join(argv)} ".find(f" fleet worker {name} ") >= 0:
        return True  # the title a node sets: "fleet worker w1@host main"
    if "worker" not in argv or not any("fleet" in arg for arg in argv[:3]):
        return False
    pairs = itertools.pairwise(argv)
    return any(flag in ("-n", "--hostname") and value == name for flag, value in pairs) or \
        f"--hostname={name}" in argv


def _process(pid: int) -> psutil.Process | None:
    try:
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return None
        return process
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return None


def _describe(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())[:80] or process.name()
    except psutil.Error:
        return "?"


def probe(record: NodeRecord) -> NodeState:
    """Find the node's process; decide running / stopped / stale pid file / not ours."""
    contents = read_pidfile(record.pidfile)
    if contents is not None:
        return _probe_pid(record, contents.pid)
    if Path(record.pidfile).exists():
        return NodeState(record, STALE, None, detail="pid file holds no pid")
    if record.pid:
        process = _process(record.pid)
        if process is not None and _started_as_recorded(process, record) and \
                is_node_process(process, record.name):
            return NodeState(record, RUNNING, record.pid, process,
                             detail=f"its pid file {record.pidfile} is missing")
    return NodeState(record, STOPPED)


def _probe_pid(record: NodeRecord, pid: int) -> NodeState:
    """The pid file names `pid`: is that process this node?"""
    process = _process(pid)
    if process is None:
        return NodeState(record, STALE, pid, detail=f"pid file names pid {pid}, which is gone")
    locked = pidfile_is_locked(record.pidfile)
    if is_node_process(process, record.name) and (
            locked or _started_as_recorded(process, record)):
        return NodeState(record, RUNNING, pid, process)
    if locked:  # someone else's live pid file: hands off
        return NodeState(record, NOT_OURS, pid, detail=(
            f"pid file {record.pidfile} is held by pid {pid}, which is not this node "
            f"({_describe(process)}); left alone, file and process"))
    return NodeState(record, NOT_OURS, pid, detail=(
        f"pid file names pid {pid}, which is not this node ({_describe(process)}); "
        "it was left alone"))


def _started_as_recorded(process: psutil.Process, record: NodeRecord) -> bool:
    try:
        return record.pid == process.pid and \
            abs(process.create_time() - record.create_time) < CREATE_TIME_SLACK
    except psutil.Error:
        return False


def remove_stale(state: NodeState, report: Report) -> None:
    """Report a stale pid file (or one naming someone else's process) and remove it,
    unless a live process holds its lock (then it is somebody's, and stays)."""
    if pidfile_is_locked(state.record.pidfile):
        report(Event(state.record.name, "stale", state.detail))
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(state.record.pidfile)
    report(Event(state.record.name, "stale",
                 f"removed stale pid file {state.record.pidfile}: {state.detail}"))


# -- start -----------------------------------------------------------------------------------


@dataclass
class StartResult:
    record: NodeRecord
    ok: bool
    already_running: bool = False
    reason: str = ""
    log: list[str] = field(default_factory=list)


@dataclass
class _Launch:
    record: NodeRecord
    pid: int  #: the launcher (`fleet worker --detach`), our child; exits once detached
    read_fd: int  #: the readiness pipe
    output_fd: int  #: the launcher's stdout and stderr (usage errors before it detached)
    buffer: bytes = b""
    outcome: Outcome = field(default_factory=Outcome)


def start(nodes: Sequence[Any], *, executable: str | None = None,
          workdir: Path | str | None = None, state: StateFile | None = None,
          env: dict[str, str] | None = None, timeout: float = DEFAULT_START_TIMEOUT,
          report: Report = _ignore) -> list[StartResult]:
    """Start `nodes` (NodeSpecs) detached, in parallel; each is OK only once it consumes."""
    records = [record_for(node, executable, workdir) for node in nodes]
    return start_records(records, state=state, env=env, timeout=timeout, report=report)


def start_records(records: Sequence[NodeRecord], *, state: StateFile | None = None,
                  env: dict[str, str] | None = None, timeout: float = DEFAULT_START_TIMEOUT,
                  report: Report = _ignore) -> list[StartResult]:
    """Start recorded nodes that are not running; remember what was started."""
    state = state or StateFile()
    results: dict[str, StartResult] = {}
    to_launch = []
    for record in records:
        found = probe(record)
        if found.running:
            results[record.name] = StartResult(record, True, already_running=True)
            report(Event(record.name, "running", f"already running (pid {found.pid})"))
            continue
        if found.state in (STALE, NOT_OURS):
            remove_stale(found, report)
        to_launch.append(record)
    if to_launch:
        state.remember(to_launch)  # remembered even if we are interrupted while waiting
        for result in _launch_all(to_launch, env, timeout, report):
            results[result.record.name] = result
        state.remember(result.record for result in results.values()
                       if result.ok and not result.already_running)
    return [results[record.name] for record in records]


def _launch_all(records: Sequence[NodeRecord], env: dict[str, str] | None, timeout: float,
                report: Report) -> list[StartResult]:
    launches = []
    results = []
    for record in records:
        try:
            launches.append(_launch(record, env))
        except OSError as exc:
            reason = f"cannot run {record.argv[0]} in {record.workdir}: {exc.strerror}"
            results.append(_failed(record, reason, report))
    results += _wait_ready(launches, time.monotonic() + timeout, report)
    return results


def _launch(record: NodeRecord, env: dict[str, str] | None) -> _Launch:
    """Run the node's `fleet worker --detach` with a readiness pipe in $FLEET_READY_FD."""
    read_fd, write_fd = os.pipe()
    output_read, output_write = os.pipe()
    environment = dict(os.environ if env is None else env)
    environment[READY_ENV] = str(write_fd)
    try:
        if _can_fork_launcher(record):
            pid = _fork_launcher(record, environment, write_fd, output_write)
        else:
            pid = subprocess.Popen(record.argv, cwd=record.workdir, env=environment,
                                   pass_fds=(write_fd,), stdin=subprocess.DEVNULL,
                                   stdout=output_write, stderr=output_write).pid
    except OSError:
        os.close(read_fd)
        os.close(output_read)
        raise
    finally:
        os.close(write_fd)
        os.close(output_write)
    os.set_blocking(read_fd, False)
    os.set_blocking(output_read, False)
    return _Launch(record, pid, read_fd, output_read)


def _can_fork_launcher(record: NodeRecord) -> bool:
    """The node runs with this very interpreter: fork instead of starting a new one."""
    return record.argv[:3] == [os.path.abspath(sys.executable), "-m", "fleet"] and \
        os.path.isdir(record.workdir)


def _fork_launcher(record: NodeRecord, environment: dict[str, str], ready_fd: int,
                   output_fd: int) -> int:
    """Fork, and run the recorded `fleet worker --detach ...` in the child as if exec'd.

    Starting ten interpreters (and importing fleet ten times) was most of the CPU a
    `multi start 10` cost; a fork of this process already has both. The child sees the
    recorded argv, directory and environment, so a later HUP re-exec runs the same command.
    """
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        os.dup2(output_fd, 1)
        os.dup2(output_fd, 2)
        devnull = os.open(os.devnull, os.O_RDONLY)
        os.dup2(devnull, 0)
        keep = sorted({0, 1, 2, ready_fd})
        for low, high in itertools.pairwise([*keep, os.sysconf("SC_OPEN_MAX")]):
            os.closerange(low + 1, high)  # none of multi's other pipes leak into the node
        if sys.path and sys.path[0] in ("", os.getcwd()):  # as `python -m` there would
            sys.path[0] = record.workdir
        os.chdir(record.workdir)
        _claim_process_title()
        os.environ.clear()
        os.environ.update(environment)
        sys.argv = ["fleet", *record.argv[3:]]
        from fleet.cli import main

        main(record.argv[3:])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)
    return 0  # not reached


def _wait_ready(launches: list[_Launch], deadline: float, report: Report) -> list[StartResult]:
    results = []
    next_progress = time.monotonic() + START_PROGRESS_EVERY
    with selectors.DefaultSelector() as selector:
        for launch in launches:
            selector.register(launch.read_fd, selectors.EVENT_READ, launch)
        while selector.get_map():
            now = time.monotonic()
            if now >= deadline:
                break
            if now >= next_progress:
                next_progress = now + START_PROGRESS_EVERY
                starting = [key.data.record.name for key in selector.get_map().values()]
                report(Event(", ".join(starting), "waiting",
                             f"{len(starting)} node(s) to consume"))
            events = selector.select(max(0.0, min(deadline, next_progress) - now))
            for key, _ in events:
                launch = key.data
                if _read_some(launch):
                    selector.unregister(launch.read_fd)
                    results.append(_finish(launch, report))
        for key in list(selector.get_map().values()):
            launch = key.data
            selector.unregister(launch.read_fd)
            results.append(_finish(launch, report, timed_out=True))
    return results


def _read_some(launch: _Launch) -> bool:
    """Read what the node's launcher said; True when its outcome is known."""
    try:
        chunk = os.read(launch.read_fd, 4096)
    except BlockingIOError:
        return False
    if chunk:
        launch.buffer += chunk
        *lines, launch.buffer = launch.buffer.split(b"\n")
        for line in lines:
            launch.outcome.feed(line.decode(errors="replace"))
        return launch.outcome.ready
    if launch.buffer:
        launch.outcome.feed(launch.buffer.decode(errors="replace"))
    return True


def _finish(launch: _Launch, report: Report, timed_out: bool = False) -> StartResult:
    os.close(launch.read_fd)
    record, outcome = launch.record, launch.outcome
    launcher_code = _reap(launch.pid)
    said = _read_available(launch.output_fd).decode(errors="replace").strip()
    os.close(launch.output_fd)
    if outcome.ready and outcome.pid:
        process = _process(outcome.pid)
        if process is not None:
            record.pid, record.create_time = outcome.pid, process.create_time()
            record.started = datetime.now(UTC).isoformat(timespec="seconds")
            report(Event(record.name, "ok", f"pid {record.pid}"))
            return StartResult(record, True)
        reason = f"it was ready (pid {outcome.pid}) but exited at once"
    elif timed_out:
        reason = "not consuming yet after the timeout; it may still be starting (see its log," \
                 " `fleet multi status`), or give a longer --timeout"
    elif said and launcher_code:
        reason = f"its launcher exited with code {launcher_code}: {said.splitlines()[-1]}"
        _note_in_log(record, said)
    else:
        reason = outcome.describe()
    return _failed(record, reason, report)


def _claim_process_title() -> None:
    """Let setproctitle take over argv's memory now, while the environment is untouched:
    it relocates the environment first, and gives up (titles never change, so `ps` and
    multi's identity check would not see the node) if the environment was rebuilt before."""
    with contextlib.suppress(ImportError):
        import setproctitle

        setproctitle.getproctitle()


def _reap(pid: int, within: float = 5.0) -> int | None:
    """The launcher's exit code (it exits as soon as the node has detached)."""
    deadline = time.monotonic() + within
    while True:
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return None
        if done:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.005)


def _read_available(fd: int) -> bytes:
    data = b""
    with contextlib.suppress(BlockingIOError, OSError):
        while chunk := os.read(fd, 65536):
            data += chunk
    return data


def _note_in_log(record: NodeRecord, text: str) -> None:
    """The node never got to its log (bad option, unwritable path): keep the reason there."""
    stamp = datetime.now(UTC).isoformat(timespec="seconds")
    with contextlib.suppress(OSError):
        record.main_log.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    with contextlib.suppress(OSError), open(record.main_log, "a") as stream:
        stream.write(f"[{stamp}: fleet multi] {record.name} did not start: {text}\n")


def _failed(record: NodeRecord, reason: str, report: Report) -> StartResult:
    tail = log_tail(record.main_log)
    report(Event(record.name, "failed", reason, tuple(tail)))
    return StartResult(record, False, reason=reason, log=tail)


# -- stop, stopwait, kill, reload ------------------------------------------------------------


@dataclass
class StopResult:
    record: NodeRecord
    was_running: bool
    signalled: bool = False
    stopped: bool = False
    killed: bool = False
    error: str = ""


def signal_nodes(records: Sequence[NodeRecord], signum: int = signal.SIGTERM, *,
                 report: Report = _ignore) -> list[tuple[StopResult, NodeState]]:
    """Send `signum` to every running node at once; stale pid files are removed."""
    done = []
    for record in records:
        found = probe(record)
        result = StopResult(record, found.running)
        if found.state in (STALE, NOT_OURS):
            remove_stale(found, report)
        elif not found.running:
            report(Event(record.name, "down", "not running"))
        else:
            try:
                found.process.send_signal(signum)
                result.signalled = True
                report(Event(record.name, "signal", f"{signal_name(signum)} -> {found.pid}"))
            except psutil.NoSuchProcess:
                result.stopped = True
                report(Event(record.name, "down", "exited before the signal"))
            except psutil.AccessDenied:
                result.error = f"not allowed to signal pid {found.pid}"
                report(Event(record.name, "failed", result.error))
        done.append((result, found))
    return done


def stop(records: Sequence[NodeRecord], signum: int = signal.SIGTERM, *,
         report: Report = _ignore) -> list[StopResult]:
    """Signal and return (stopwait waits)."""
    return [result for result, _ in signal_nodes(records, signum, report=report)]


def stopwait(records: Sequence[NodeRecord], signum: int = signal.SIGTERM, *,
             timeout: float | None = None, report: Report = _ignore) -> list[StopResult]:
    """Signal every node, then wait until each has exited; after `timeout` seconds SIGKILL
    the process group of whatever is left."""
    signalled = signal_nodes(records, signum, report=report)
    waiting = {result.record.name: (result, found) for result, found in signalled
               if result.signalled}
    deadline = None if timeout is None else time.monotonic() + timeout
    _wait_exits(waiting, deadline, report)
    if waiting:
        for result, found in waiting.values():
            _kill_group(found, report, f"still running after {timeout:g}s")
            result.killed = True
        _wait_exits(waiting, time.monotonic() + KILL_WAIT, report, quiet=True)
        for result, found in waiting.values():
            result.error = f"pid {found.pid} survived SIGKILL"
            report(Event(result.record.name, "failed", result.error))
    for result, found in signalled:
        if result.stopped or result.killed:
            _forget_pidfile(found)
    return [result for result, _ in signalled]


def _wait_exits(waiting: dict[str, tuple[StopResult, NodeState]], deadline: float | None,
                report: Report, quiet: bool = False) -> None:
    """Wait until the processes in `waiting` exit (removed from it as they do)."""
    watchers = {name: _ExitWatcher(found) for name, (_, found) in waiting.items()}
    next_progress = time.monotonic() + PROGRESS_EVERY
    try:
        while waiting:
            for name in [name for name, watcher in watchers.items() if watcher.exited()]:
                result, _ = waiting.pop(name)
                watchers.pop(name).close()
                result.stopped = not result.killed
                if not quiet:
                    report(Event(name, "killed" if result.killed else "down",
                                 "killed" if result.killed else ""))
            now = time.monotonic()
            if not waiting or (deadline is not None and now >= deadline):
                return
            if now >= next_progress and not quiet:
                next_progress = now + PROGRESS_EVERY
                report(Event(", ".join(waiting), "waiting",
                             f"{len(waiting)} node(s) still stopping"))
            until = min(next_progress, deadline) if deadline is not None else next_progress
            _ExitWatcher.wait_any(list(watchers.values()), until - now)
    finally:
        for watcher in watchers.values():
            watcher.close()


class _ExitWatcher:
    """Wait for a process that is not our child to exit: a pidfd where Linux has one (no
    polling), else polling psutil."""

    def __init__(self, found: NodeState):
        self.process = found.process
        self.fd: int | None = None
        with contextlib.suppress(AttributeError, OSError):
            self.fd = os.pidfd_open(found.pid)

    def exited(self) -> bool:
        try:
            return self.process.status() == psutil.STATUS_ZOMBIE or \
                not self.process.is_running()
        except psutil.NoSuchProcess:
            return True

    @staticmethod
    def wait_any(watchers: list[_ExitWatcher], seconds: float) -> None:
        fds = [watcher.fd for watcher in watchers if watcher.fd is not None]
        if len(fds) == len(watchers) and fds:
            import select

            select.select(fds, [], [], max(0.0, seconds))
        else:
            time.sleep(max(0.0, min(seconds, 0.02)))

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


def _kill_group(found: NodeState, report: Report, why: str) -> None:
    """SIGKILL the node's whole process group (main process and pool children)."""
    pid = found.pid
    try:
        group = os.getpgid(pid)
    except ProcessLookupError:
        return
    try:
        if group == pid:  # a detached node leads its own group
            os.killpg(group, signal.SIGKILL)
        else:  # started some other way: the process and its children only
            for process in [*found.process.children(recursive=True), found.process]:
                with contextlib.suppress(psutil.NoSuchProcess):
                    process.kill()
    except (ProcessLookupError, psutil.NoSuchProcess):
        return
    report(Event(found.record.name, "killed", f"SIGKILL -> process group {group} ({why})"))


def _forget_pidfile(found: NodeState) -> None:
    """A killed node could not remove its pid file: remove it if it still names that pid."""
    contents = read_pidfile(found.record.pidfile)
    if contents is not None and contents.pid == found.pid:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(found.record.pidfile)


def kill(records: Sequence[NodeRecord], *, report: Report = _ignore) -> list[StopResult]:
    """SIGKILL each running node's process group, wait for it, remove its pid file."""
    results = []
    waiting = {}
    for record in records:
        found = probe(record)
        result = StopResult(record, found.running)
        results.append(result)
        if found.state in (STALE, NOT_OURS):
            remove_stale(found, report)
        elif not found.running:
            report(Event(record.name, "down", "not running"))
        else:
            _kill_group(found, report, "fleet multi kill")
            result.killed = result.signalled = True
            waiting[record.name] = (result, found)
    pending = dict(waiting)
    _wait_exits(pending, time.monotonic() + KILL_WAIT, report, quiet=True)
    for name, (result, found) in waiting.items():
        if name in pending:
            result.error = f"pid {found.pid} survived SIGKILL"
            report(Event(name, "failed", result.error))
        else:
            _forget_pidfile(found)
    return results


def reload(records: Sequence[NodeRecord], *, report: Report = _ignore) -> list[StopResult]:
    """HUP: each node restarts in place (same pid, code reloaded) after its running tasks."""
    return stop(records, signal.SIGHUP, report=report)


# -- restart ---------------------------------------------------------------------------------


def restart(records: Sequence[NodeRecord], *, signum: int = signal.SIGTERM,
            timeout: float | None = None, rolling: bool = False,
            start_timeout: float = DEFAULT_START_TIMEOUT, state: StateFile | None = None,
            env: dict[str, str] | None = None, report: Report = _ignore
            ) -> list[StartResult]:
    """stopwait + start with the recorded arguments; `rolling`: one node at a time, the next
    only once the previous one consumes again, so capacity never drops to zero."""
    if not rolling:
        stopwait(records, signum, timeout=timeout, report=report)
        return start_records(records, state=state, env=env, timeout=start_timeout,
                             report=report)
    results = []
    for position, record in enumerate(records):
        stopwait([record], signum, timeout=timeout, report=report)
        [result] = start_records([record], state=state, env=env, timeout=start_timeout,
                                 report=report)
        results.append(result)
        if not result.ok:
            for rest in records[position + 1:]:
                report(Event(rest.name, "info", "not restarted: the rolling restart stopped "
                             f"because {record.name} did not come back"))
            break
    return results


# -- status ----------------------------------------------------------------------------------


def status(records: Sequence[NodeRecord], consumers: dict[str, Any] | None = None
           ) -> list[dict[str, Any]]:
    """One row per node: state, pid, uptime, memory of its process tree, children, log.

    `consumers` (node name -> its fresh consumer records, from `broker_consumers`) adds
    whether a running node is really consuming: alive is not enough (celery's nodes could
    stay up without consuming after a broker outage, and look healthy).
    """
    rows = []
    now = time.time()
    for record in records:
        found = probe(record)
        row: dict[str, Any] = {"node": record.name, "state": found.state, "pid": found.pid,
                               "uptime": None, "memory": None, "children": None,
                               "consuming": None, "logfile": str(record.main_log),
                               "pidfile": record.pidfile, "detail": found.detail}
        if found.running:
            row.update(_usage(found.process, now))
            if consumers is not None:
                row["consuming"] = any(consumer.pid == found.pid
                                       for consumer in consumers.get(record.name, ()))
                if not row["consuming"] and not row["detail"]:
                    row["detail"] = "alive, but not consuming: no fresh heartbeat at the broker"
        rows.append(row)
    return rows


def broker_url_of(record: NodeRecord, default: str) -> str:
    """The broker a node was started with (its --broker), else `default`."""
    for arg in record.argv:
        if arg.startswith("--broker="):
            return arg.partition("=")[2]
    return default


def broker_consumers(urls: Iterable[str], fresh_within: float) -> dict[str, Any] | None:
    """Node name -> its consumer records with a heartbeat younger than `fresh_within`
    seconds, across the brokers in `urls`; None if a broker could not be asked. (A node
    killed with SIGKILL leaves its record behind until it goes stale: hence a list.)"""
    from fleet.engine.transport import open_transport

    found: dict[str, Any] = {}
    now = time.time()
    for url in dict.fromkeys(urls):
        transport = None
        try:
            transport = open_transport(url)
            for consumer in transport.consumers():
                if now - consumer.last_heartbeat <= fresh_within and \
                        consumer.info.get("state", "running") == "running":
                    found.setdefault(consumer.node, []).append(consumer)
        except Exception:  # an unreachable broker: say "unknown", never fail status
            return None
        finally:
            if transport is not None:
                with contextlib.suppress(Exception):
                    transport.close()
    return found


def _usage(process: psutil.Process, now: float) -> dict[str, Any]:
    try:
        children = process.children(recursive=True)
        memory = process.memory_info().rss
        for child in children:
            with contextlib.suppress(psutil.Error):
                memory += child.memory_info().rss
        return {"uptime": round(now - process.create_time(), 1), "memory": memory,
                "children": len(children)}
    except psutil.Error:
        return {}
