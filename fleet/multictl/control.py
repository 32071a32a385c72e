"""The `fleet multi` controller: start nodes detached and verified, remember them, find them
again and signal them safely, stop them with a deadline.

This module never prints: every step is reported as an `Event` to a callback, and each
command returns data (the CLI in fleet/cli/multi.py renders both). Nodes come in as
`NodeSpec`s (from fleet.multi, or later from a config file) or as `NodeRecord`s read back
from the state file, so nothing here depends on how a command line looked. The records and
the state file are in fleet/multictl/state.py, launching and readiness in fleet/multictl/launch.py.

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
import signal
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from fleet.daemon import pidfile_is_locked, read_pidfile
from fleet.multictl.launch import (
    DEFAULT_START_TIMEOUT,
    Event,
    Report,
    StartResult,
    ignore,
    launch_all,
)
from fleet.multictl.state import NodeRecord, StateFile, record_for
from fleet.signals import signal_name

__all__ = ["DEFAULT_START_TIMEOUT", "Event", "NodeRecord", "NodeState", "Report", "StartResult",
           "StateFile", "StopResult", "kill", "probe", "record_for", "reload", "restart",
           "start", "start_records", "status", "stop", "stopwait"]

RUNNING, STOPPED, STALE, NOT_OURS = "running", "stopped", "stale pid file", "not ours"
KILL_WAIT = 5.0  #: after SIGKILL, how long to wait for the kernel to finish the job
PROGRESS_EVERY = 1.0
CREATE_TIME_SLACK = 1.0  #: seconds; psutil's create_time is rounded to clock ticks


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
    from fleet.masking import mask_argv

    try:
        return " ".join(mask_argv(process.cmdline()))[:80] or process.name()
    except psutil.Error:
        return "?"


def probe(record: NodeRecord) -> NodeState:
    """Find the node's process; decide running / stopped / stale pid file / not ours."""
    contents = read_pidfile(record.pidfile)
    if contents is not None:
        return _probe_pid(record, contents.pid)
    if os.path.lexists(record.pidfile):
        return NodeState(record, STALE, None, detail=(
            f"{record.pidfile} holds no pid: it is not a pid file fleet wrote (or a link); "
            "left alone: remove it if it is an old pid file"))
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
    unless a live process holds its lock (then it is somebody's, and stays) or it holds no
    pid (then it may be any file a --pidfile named: never removed)."""
    if state.pid is None or pidfile_is_locked(state.record.pidfile):
        report(Event(state.record.name, "stale", state.detail))
        return
    with contextlib.suppress(FileNotFoundError):
        os.unlink(state.record.pidfile)
    report(Event(state.record.name, "stale",
                 f"removed stale pid file {state.record.pidfile}: {state.detail}"))


# -- start -----------------------------------------------------------------------------------


def start(nodes: Sequence[Any], *, executable: str | None = None,
          workdir: Path | str | None = None, state: StateFile | None = None,
          env: dict[str, str] | None = None, timeout: float = DEFAULT_START_TIMEOUT,
          report: Report = ignore) -> list[StartResult]:
    """Start `nodes` (NodeSpecs) detached, in parallel; each is OK only once it consumes."""
    records = [record_for(node, executable, workdir) for node in nodes]
    return start_records(records, state=state, env=env, timeout=timeout, report=report)


def start_records(records: Sequence[NodeRecord], *, state: StateFile | None = None,
                  env: dict[str, str] | None = None, timeout: float = DEFAULT_START_TIMEOUT,
                  report: Report = ignore) -> list[StartResult]:
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
        for result in launch_all(to_launch, env, timeout, report):
            results[result.record.name] = result
        state.remember(result.record for result in results.values()
                       if result.ok and not result.already_running)
    return [results[record.name] for record in records]


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
                 report: Report = ignore) -> list[tuple[StopResult, NodeState]]:
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
         report: Report = ignore) -> list[StopResult]:
    """Signal and return (stopwait waits)."""
    return [result for result, _ in signal_nodes(records, signum, report=report)]


def stopwait(records: Sequence[NodeRecord], signum: int = signal.SIGTERM, *,
             timeout: float | None = None, report: Report = ignore) -> list[StopResult]:
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


def kill(records: Sequence[NodeRecord], *, report: Report = ignore) -> list[StopResult]:
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


def reload(records: Sequence[NodeRecord], *, report: Report = ignore) -> list[StopResult]:
    """HUP: each node restarts in place (same pid, code reloaded) after its running tasks."""
    return stop(records, signal.SIGHUP, report=report)


# -- restart ---------------------------------------------------------------------------------


def restart(records: Sequence[NodeRecord], *, signum: int = signal.SIGTERM,
            timeout: float | None = None, rolling: bool = False,
            start_timeout: float = DEFAULT_START_TIMEOUT, state: StateFile | None = None,
            env: dict[str, str] | None = None, report: Report = ignore
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
