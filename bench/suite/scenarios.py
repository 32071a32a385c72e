"""Scenarios 1-4 and 6: what one measurement of one peer does (the rounds live in main).

Each function measures one peer once and returns plain numbers; the worker it started is
stopped (process group TERM, then KILL) before it returns, whatever happened.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from suite import procs, stats
from suite.peers.base import Peer

POLL = 0.005  # seconds between two looks at a draining queue


@dataclass(frozen=True)
class Sizes:
    """How much work each scenario does per measurement (bench/run sets them per mode)."""

    enqueue: int
    drain: int
    roundtrips: int
    rounds: int
    ops_rounds: int  #: scenario 5 (ten nodes per framework per round) is the slowest one


@contextmanager
def worker(peer: Peer, results: bool = False, consuming: bool = True) -> Iterator[procs.Group]:
    """A running worker of `peer`, proven to consume (unless told not to wait), then stopped."""
    group = peer.start_worker(results)
    try:
        if consuming:
            peer.wait_consuming(group)
        yield group
    finally:
        procs.stop_group(group)


def timed_calls(call: Callable[[], None], count: int) -> float:
    """Calls per second of `count` sequential calls (after one untimed call to connect)."""
    call()
    started = time.perf_counter()
    for _ in range(count):
        call()
    return count / (time.perf_counter() - started)


def enqueue(peer: Peer, count: int) -> float:
    """Scenario 1: one client sends `count` no-ops one call at a time; calls/s."""
    return timed_calls(peer.send_noop, count)


def timed_batch(send: Callable[[int], object], count: int) -> float:
    """Tasks/s of one `send(count)` (after an untimed `send(1)` to connect)."""
    send(1)
    started = time.perf_counter()
    send(count)
    return count / (time.perf_counter() - started)


def enqueue_batched(peer: Peer, count: int) -> float:
    """Scenario 1, batched: `count` no-ops in one batch call; tasks/s."""
    return timed_batch(peer.send_noops_batched, count)


@dataclass(frozen=True)
class Drain:
    rate: float  #: tasks/s from the first to the last completion
    with_startup: float  #: tasks/s from the worker's start to the last completion


def drain(peer: Peer, count: int, results: bool, timeout: float) -> Drain:
    """Scenario 2 (and 6): `count` tasks queued first, then one worker started."""
    peer.fill(count, results)
    spawned = time.perf_counter()
    with worker(peer, results, consuming=False) as group:
        first = None
        deadline = time.monotonic() + timeout
        while True:
            left = peer.outstanding()
            now = time.perf_counter()
            if first is None and left < count:
                first = now
            if left <= 0:
                break
            check_alive(peer, group, deadline, f"{left} of {count} tasks left")
            time.sleep(POLL)
    first = now if first is None else first
    steady = (count - 1) / (now - first) if now > first else float("nan")
    return Drain(steady, count / (now - spawned))


def check_alive(peer: Peer, group: procs.Group, deadline: float, what: str) -> None:
    dead = group.exited()
    if dead is not None:
        raise RuntimeError(f"{peer.label} worker exited with status {dead.returncode} ({what})")
    if time.monotonic() > deadline:
        raise RuntimeError(f"{peer.label} timed out ({what})")


@dataclass(frozen=True)
class RoundTrip:
    p50_ms: float
    p99_ms: float


def roundtrip(peer: Peer, count: int) -> RoundTrip:
    """Scenario 3: `add(1, 2)` then wait for its result, `count` times in a row."""
    with worker(peer, results=True):
        for _ in range(min(20, count)):  # warm up: connections, imports, first-task paths
            peer.roundtrip()
        samples = []
        for _ in range(count):
            started = time.perf_counter()
            peer.roundtrip()
            samples.append((time.perf_counter() - started) * 1000.0)
    return RoundTrip(stats.percentile(samples, 50), stats.percentile(samples, 99))


def memory(peer: Peer, cpu_seconds: float = 0.0) -> dict[str, float]:
    """Scenario 4: PSS and RSS (MiB) of the whole tree of an idle, settled worker; with
    `cpu_seconds`, also the CPU it then uses while idle for that long (CPU-ms per second, of
    the whole tree and of its main process: "cpu", "cpu_main")."""
    with worker(peer) as group:
        found = procs.settled_memory(group.pids)
        cpu = procs.idle_cpu(group.pids[0], cpu_seconds) if cpu_seconds else {}
    figures = {"pss": found["pss"] / 2**20, "rss": found["rss"] / 2**20,
               "processes": found["processes"]}
    if cpu:
        figures |= {"cpu": cpu["tree"], "cpu_main": cpu["main"]}
    return figures
