#!/usr/bin/env python3
"""Idle node CPU: what a settled, idle `fleet worker -c 2` uses, process by process.

    bench/idle_cpu.py [--broker redis|sqlite] [--seconds 10] [--settle 2]
                      [--long-task 0]

Starts a private redis-server on a free port of 127.0.0.1 (never 6379) or uses a SQLite
file in a temporary directory, starts one node on bench/apps/fleet_tasks.py, runs one task
(so its children are live), lets it settle, then measures the CPU time (psutil cpu_times,
user + system) each process of the node uses over --seconds, in CPU-milliseconds per second
(10 ms/s is 1% of one core). With --long-task S it measures instead while one task of S
seconds runs in a node of one child (the case whose main loop used to spin). Not part of
the test suite; `bench/run` measures the same idle figure (section 4).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE / "apps"))

from roundtrip import start_node, start_redis  # noqa: E402


def cpu_by_process(main: psutil.Process) -> dict[int, tuple[float, str]]:
    """CPU seconds so far of the node's main process and each child, with a short name."""
    found = {}
    for proc in [main, *main.children(recursive=True)]:
        try:
            times = proc.cpu_times()
            found[proc.pid] = (times.user + times.system, " ".join(proc.cmdline()).strip()[:50])
        except psutil.Error:
            continue
    return found


def measure(node_pid: int, seconds: float, during: object = None) -> None:
    main = psutil.Process(node_pid)
    before = cpu_by_process(main)
    started = time.monotonic()
    if during is not None:
        during.get(timeout=seconds + 30)
        seconds = time.monotonic() - started
    else:
        time.sleep(seconds)
    after = cpu_by_process(main)
    total = 0.0
    for pid, (used, name) in after.items():
        spent = used - before.get(pid, (0.0, ""))[0]
        total += spent
        role = "main " if pid == node_pid else "child"
        print(f"{pid:>7}  {role}  {1000 * spent / seconds:7.2f} ms/s  "
              f"({spent:.3f} CPU-s in {seconds:.1f} s)  {name}")
    print(f"whole node: {1000 * total / seconds:.2f} ms/s ({100 * total / seconds:.2f}% of a "
          f"core) over {seconds:.1f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=["redis", "sqlite"], default="redis")
    parser.add_argument("--seconds", type=float, default=10.0, help="seconds to measure")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds to settle first")
    parser.add_argument("--long-task", type=float, default=0.0, metavar="S",
                        help="measure while one task of S seconds runs (one child)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as workdir:
        redis_proc = None
        if args.broker == "redis":
            redis_proc, url = start_redis(workdir)
        else:
            url = f"sqlite:///{workdir}/bench.db"
        os.environ["FLEET_BROKER_URL"] = url
        import fleet_tasks as tasks

        tasks.app.conf.update(broker_url=url)
        node = start_node(url, workdir, concurrency=1 if args.long_task else 2)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    tasks.add.delay(1, 2).get(timeout=0.5)
                    break
                except Exception:
                    if node.poll() is not None or time.monotonic() > deadline:
                        sys.exit("the node did not start")
            time.sleep(args.settle)
            print(f"{args.broker}: " + (f"while one {args.long_task:g} s task runs"
                                        if args.long_task else "idle"))
            running = tasks.sleep.delay(args.long_task) if args.long_task else None
            if running is not None:
                time.sleep(0.2)  # (from when it runs)
            measure(node.pid, args.seconds, running)
        finally:
            os.killpg(node.pid, signal.SIGTERM)
            node.wait(10)
            if redis_proc is not None:
                redis_proc.terminate()
                redis_proc.wait(5)


if __name__ == "__main__":
    main()
