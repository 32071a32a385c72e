"""Where the time goes, for the targets this run missed: py-spy on the worker processes,
cProfile on the client, a per-process memory breakdown. Text blocks for RESULTS.md.
"""

from __future__ import annotations

import collections
import contextlib
import cProfile
import io
import pstats
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from suite import procs, scenarios
from suite.peers.base import Peer
from suite.peers.fleet_peer import FleetPeer

TOP = 10


@dataclass(frozen=True)
class Stack:
    role: str  #: "main" or "child" (from the process title py-spy records), or "" if unknown
    frames: list[str]
    count: int


def parse_collapsed(text: str) -> list[Stack]:
    """py-spy's raw output: one `process N:"title";frame;...;leaf COUNT` line per stack."""
    stacks = []
    for line in text.splitlines():
        head, _, count = line.rpartition(" ")
        if not head or not count.isdigit():
            continue
        parts = head.split(";")
        titles = [part for part in parts if part.startswith("process ")]
        frames = [part for part in parts if not part.startswith("process ")]
        role = ""
        if titles:
            role = "child" if "child" in titles[-1] else "main"
        if frames:
            stacks.append(Stack(role, frames, int(count)))
    return stacks


def summarize_stacks(stacks: list[Stack], top: int = TOP) -> str:
    """Where the samples are: per process role (the node's main process, its children), the
    functions by own time (leaf), then fleet's functions including their callees (entry points
    that hold nearly every sample are left out)."""
    total = sum(stack.count for stack in stacks) or 1
    lines = [f"{total} samples over the worker's processes (py-spy, 250 Hz)"]
    for role in sorted({stack.role for stack in stacks}, key=lambda r: (r != "main", r)):
        mine = [stack for stack in stacks if stack.role == role]
        share = sum(stack.count for stack in mine)
        own: collections.Counter[str] = collections.Counter()
        for stack in mine:
            own[stack.frames[-1]] += stack.count
        name = {"main": "main process", "child": "pool children"}.get(role, "all processes")
        lines += ["", f"{name}: {100 * share / total:.1f}% of samples; own time:"]
        lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    inclusive: collections.Counter[str] = collections.Counter()
    for stack in stacks:
        for frame in set(stack.frames):
            if "fleet/" in frame and "fleet/cli.py" not in frame:
                inclusive[frame] += stack.count
    telling = [(frame, n) for frame, n in inclusive.most_common() if n < 0.97 * total]
    lines += ["", "fleet functions, including callees:"]
    lines += [f"  {100 * n / total:5.1f}%  {frame}" for frame, n in telling[:top]]
    return "\n".join(lines)


@contextlib.contextmanager
def pyspy(pid: int, out: Path) -> Iterator[None]:
    """Sample `pid` and its children with py-spy while the block runs."""
    binary = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    spy = subprocess.Popen([binary, "record", "--pid", str(pid), "--subprocesses", "--nonblocking",
                            "-r", "250", "--format", "raw", "-o", str(out)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    try:
        time.sleep(0.2)  # py-spy attaches
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(20)
        except subprocess.TimeoutExpired:
            spy.kill()
            spy.wait()


def read_profile(out: Path) -> str:
    if not out.exists():
        return "(py-spy wrote no profile: it may lack permission to trace processes here)"
    return summarize_stacks(parse_collapsed(out.read_text(errors="replace")))


def worker_drain(peer: FleetPeer, count: int, results: bool, out: Path) -> str:
    """py-spy over a worker draining `count` queued tasks, sampled once it is consuming
    (start-up is left out: the drain figures show it separately)."""
    peer.prepare()
    peer.fill_fast(count, results)
    with scenarios.worker(peer, results, consuming=False) as group:
        deadline = time.monotonic() + 300
        while peer.outstanding() >= count:
            scenarios.check_alive(peer, group, deadline, "waiting for the first task")
            time.sleep(0.001)
        with pyspy(group.pids[0], out):
            while peer.outstanding() > 0:
                scenarios.check_alive(peer, group, deadline, "profiling a drain")
                time.sleep(scenarios.POLL)
    return read_profile(out)


def client(call: Callable[[], None], count: int, top: int = TOP) -> str:
    """cProfile of `count` calls in this process, by cumulative time."""
    call()
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(count):
        call()
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(top)
    body = text.getvalue()
    start = body.find("   ncalls")
    return body[start:].rstrip() if start >= 0 else body.rstrip()


def roundtrip(peer: Peer, count: int, out: Path) -> str:
    """The client (cProfile) and the worker (py-spy) during `count` round trips."""
    peer.prepare()
    with scenarios.worker(peer, results=True) as group, pyspy(group.pids[0], out):
        client_text = client(peer.roundtrip, count)
    return f"client, cProfile of {count} round trips:\n{client_text}\n\nworker, py-spy:\n" \
           f"{read_profile(out)}"


def memory_breakdown(peer: Peer) -> str:
    """PSS / RSS / USS of each process of an idle worker, and what it is."""
    peer.prepare()
    lines = [f"{'pid':>7} {'PSS MiB':>8} {'RSS MiB':>8} {'USS MiB':>8}  process"]
    with scenarios.worker(peer) as group:
        procs.settled_memory(group.pids)
        for proc in procs.tree(group.pids):
            with contextlib.suppress(psutil.Error):
                info = proc.memory_full_info()
                title = " ".join(proc.cmdline())[:70]
                lines.append(f"{proc.pid:>7} {info.pss / 2**20:8.1f} {info.rss / 2**20:8.1f} "
                             f"{info.uss / 2**20:8.1f}  {title}")
    return "\n".join(lines)
