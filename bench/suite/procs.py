"""Every process the suite starts, and the guarantee that none outlives it.

Each child runs in its own session (so its whole process group can be signalled) and carries
BENCH_RUN_ID in its environment. Detached nodes started by `celery multi` / `fleet multi`
leave our process groups, so `kill_leftovers()` also looks for processes that carry our run id
(and only those) and kills them by pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import psutil

RUN_ID = uuid.uuid4().hex
_started: list[subprocess.Popen] = []
_reaped_at: dict[int, float] = {}  # pid -> when poll() found it exited
RECENT = 30.0  # seconds in which a reaped leader's group number cannot be someone else's


def poll(proc: subprocess.Popen) -> int | None:
    """Popen.poll(), remembering when the process was found exited (see `stop`)."""
    status = proc.poll()
    if status is not None:
        _reaped_at.setdefault(proc.pid, time.monotonic())
    return status


@dataclass
class Group:
    """The processes of one worker (most frameworks: one; the bare floor: two)."""

    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [proc.pid for proc in self.procs]

    def exited(self) -> subprocess.Popen | None:
        """The first process that has already exited, if any (a worker that died at start)."""
        return next((proc for proc in self.procs if poll(proc) is not None), None)


def spawn(argv: Sequence[str], env: dict[str, str], cwd: Path, log: Path,
          role: str = "worker") -> subprocess.Popen:
    """Start argv in its own session with output to `log`; remembered for cleanup.

    `role` "server" marks the private redis-server, which `kill_strays()` leaves alone.
    """
    with open(log, "ab") as out:
        proc = subprocess.Popen(list(argv), cwd=str(cwd),
                                env={**env, "BENCH_RUN_ID": RUN_ID, "BENCH_ROLE": role},
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    _started.append(proc)
    return proc


def run(argv: Sequence[str], env: dict[str, str], cwd: Path, log: Path,
        timeout: float = 120.0) -> tuple[int, float]:
    """Run a command to completion; (exit status, wall seconds). Killed if it overruns."""
    started = time.perf_counter()
    proc = spawn(argv, env, cwd, log)
    try:
        status = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        stop(proc, grace=0)
        status = -9
    finally:
        forget(proc)
    return status, time.perf_counter() - started


def forget(proc: subprocess.Popen) -> None:
    if proc in _started:
        _started.remove(proc)


def stop(proc: subprocess.Popen, grace: float = 5.0) -> None:
    """TERM the process group, wait up to `grace` seconds, then KILL the group.

    A leader that died on its own may leave its pool behind in its group: that group is
    killed if the leader was found dead moments ago. One reaped long before is left alone:
    its number may belong to someone else by now.
    """
    if proc.returncode is not None:
        reaped = _reaped_at.get(proc.pid)
        if reaped is not None and time.monotonic() - reaped < RECENT:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        forget(proc)
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        if proc.poll() is not None:
            break
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(wait)
    # the group may outlive its leader (children that ignore TERM); its members keep the
    # group's number in use, so it cannot have been handed to anyone else in the meantime
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    forget(proc)


def stop_group(group: Group, grace: float = 5.0) -> None:
    for proc in group.procs:
        stop(proc, grace)


def ours(include_server: bool = True) -> list[psutil.Process]:
    """Live processes that carry this run's BENCH_RUN_ID (ours, wherever they went)."""
    found = []
    me = os.getpid()
    for proc in psutil.process_iter():
        if proc.pid == me:
            continue
        with contextlib.suppress(psutil.Error):
            environ = proc.environ()
            if environ.get("BENCH_RUN_ID") != RUN_ID:
                continue
            if include_server or environ.get("BENCH_ROLE") != "server":
                found.append(proc)
    return found


def kill_strays() -> int:
    """KILL every process of this run except the redis-server (e.g. detached nodes)."""
    return _kill(ours(include_server=False))


def kill_leftovers() -> int:
    """KILL everything this run started that is still alive; how many there were."""
    for proc in list(_started):
        stop(proc, grace=0)
    return _kill(ours())


def _kill(leftovers: list[psutil.Process]) -> int:
    for proc in leftovers:
        with contextlib.suppress(psutil.Error):
            proc.kill()
    psutil.wait_procs(leftovers, timeout=5)
    return len(leftovers)


def tree(pids: Sequence[int]) -> list[psutil.Process]:
    """The processes rooted at `pids` (each root and all its descendants)."""
    procs = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            root = psutil.Process(pid)
            procs.append(root)
            procs.extend(root.children(recursive=True))
    return procs


def tree_memory(pids: Sequence[int]) -> dict[str, float]:
    """PSS and RSS (bytes) summed over the whole process tree, and its process count.

    PSS splits each shared page between the processes that map it, so the sum is what the
    tree really costs; RSS counts shared pages once per process (the familiar, larger figure).
    """
    pss = rss = 0
    count = 0
    for proc in tree(pids):
        with contextlib.suppress(psutil.Error):
            info = proc.memory_full_info()
            pss += info.pss
            rss += info.rss
            count += 1
    return {"pss": float(pss), "rss": float(rss), "processes": float(count)}


def tree_cpu(pids: Sequence[int]) -> dict[int, float]:
    """CPU seconds (user + system) used so far by each process of the tree, by pid."""
    used = {}
    for proc in tree(pids):
        with contextlib.suppress(psutil.Error):
            times = proc.cpu_times()
            used[proc.pid] = times.user + times.system
    return used


def idle_cpu(main_pid: int, seconds: float) -> dict[str, float]:
    """CPU-milliseconds per second that an idle worker's tree, and its main process, use
    over `seconds` (10 ms/s is 1% of one core)."""
    before = tree_cpu([main_pid])
    time.sleep(seconds)
    after = tree_cpu([main_pid])
    spent = {pid: after[pid] - before.get(pid, 0.0) for pid in after}
    return {"tree": 1000 * sum(spent.values()) / seconds,
            "main": 1000 * spent.get(main_pid, 0.0) / seconds}


def settled_memory(pids: Sequence[int], interval: float = 0.5, limit: float = 15.0
                   ) -> dict[str, float]:
    """Tree memory once it stops moving: two samples `interval` apart within 1% (or `limit`)."""
    deadline = time.monotonic() + limit
    last = tree_memory(pids)
    while time.monotonic() < deadline:
        time.sleep(interval)
        now = tree_memory(pids)
        if now["processes"] == last["processes"] and abs(now["pss"] - last["pss"]) <= \
                0.01 * max(last["pss"], 1.0):
            return now
        last = now
    return last
