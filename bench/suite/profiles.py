"""Where the time goes, for the targets this run missed: py-spy on the worker processes,
cProfile on the client, a per-process memory breakdown. Text blocks for RESULTS.md.
"""

from __future__ import annotations

import collections
import contextlib
import cProfile
import io
import os
import pstats
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil

from suite import ops, procs, scenarios
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
            if "fleet/" in frame and "fleet/cli" not in frame:  # fleet/cli/ (or the old cli.py)
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


def start_cost(framework: ops.Framework) -> str:
    """What starting ten nodes costs in CPU (the multi command, and every node process),
    and the modules a node imports that take longest: the work behind `multi start`."""
    framework.available()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    try:
        framework.run(framework.multi_argv("start"), "start-profile")
        answered = ops.wait_all_answer(framework, time.monotonic() + ops.START_TIMEOUT)
        wall = time.perf_counter() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        nodes = framework.node_processes()
        node_cpu = 0.0
        for proc in nodes:
            with contextlib.suppress(psutil.Error):
                times = proc.cpu_times()
                node_cpu += times.user + times.system
        framework.run(framework.multi_argv("stopwait"), "stopwait-profile")
    finally:
        framework.kill_nodes()
        procs.kill_strays()
    command_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    cores = os.cpu_count() or 1
    lines = [f"{answered} nodes answered after {wall:.2f} s; {len(nodes)} node processes",
             f"CPU: the multi command (with its children until they detached) {command_cpu:.2f} s, "
             f"the node processes {node_cpu:.2f} s "
             f"in all ({node_cpu / max(len(nodes), 1) * 1000:.0f} ms each): on {cores} cores "
             f"at least {(node_cpu + command_cpu) / cores:.2f} s of wall time",
             "", "slowest imports of a node (python -X importtime, own time):",
             import_times(framework)]
    return "\n".join(lines)


def import_times(framework: ops.Framework, top: int = TOP) -> str:
    """The modules a node's main process spends longest importing (own microseconds)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-c",
                           "import fleet.cli, fleet.engine.worker, fleet_tasks"],
                          capture_output=True, text=True, cwd=framework.env.apps_dir,
                          env=framework.env_vars(), check=False)
    rows = []
    for line in done.stderr.splitlines():
        parts = [part.strip() for part in line.removeprefix("import time:").split("|")]
        if len(parts) == 3 and parts[0].isdigit():
            rows.append((int(parts[0]), int(parts[1]), parts[2]))
    total = sum(own for own, _, _ in rows)
    lines = [f"  {total / 1000:7.1f} ms in all, {len(rows)} modules"]
    slowest = sorted(rows, reverse=True)[:top]
    lines += [f"  {own / 1000:7.1f} ms  {name}" for own, _, name in slowest]
    return "\n".join(lines)


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
