#!/usr/bin/env python3
"""Idle node memory: PSS, RSS and USS of a `fleet worker -c 2` process tree, settled.

    bench/idle_memory.py [--broker redis|sqlite] [--settle 2] [--tasks 1]

Starts a private redis-server on a free port of 127.0.0.1 (never 6379) or uses a SQLite
file in a temporary directory, starts one node on bench/apps/fleet_tasks.py, runs one task
(so its children are live), waits until it settles and prints each process's figures and
the sum. Not part of the test suite.
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

MIB = 1024 * 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--broker", choices=["redis", "sqlite"], default="redis")
    parser.add_argument("--settle", type=float, default=2.0, help="seconds to settle")
    parser.add_argument("--tasks", type=int, default=1,
                        help="tasks to run first (more: shows what running leaves behind)")
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
        node = start_node(url, workdir)
        try:
            deadline = time.monotonic() + 20
            while True:
                try:
                    tasks.add.delay(1, 2).get(timeout=0.5)
                    break
                except Exception:
                    if node.poll() is not None or time.monotonic() > deadline:
                        sys.exit("the node did not start")
            for _ in range(args.tasks - 1):
                tasks.add.delay(1, 2).get(timeout=10)
            time.sleep(args.settle)
            main_proc = psutil.Process(node.pid)
            total = [0.0, 0.0, 0.0]
            for proc in [main_proc, *main_proc.children(recursive=True)]:
                info = proc.memory_full_info()
                figures = (info.pss / MIB, info.rss / MIB, info.uss / MIB)
                total = [a + b for a, b in zip(total, figures, strict=True)]
                print(f"{proc.pid:>7}  PSS {figures[0]:5.1f}  RSS {figures[1]:5.1f}  "
                      f"USS {figures[2]:5.1f}  {' '.join(proc.cmdline())[:60]}")
            print(f"{args.broker}: whole tree PSS {total[0]:.1f} MiB, RSS {total[1]:.1f} MiB, "
                  f"USS {total[2]:.1f} MiB")
        finally:
            os.killpg(node.pid, signal.SIGTERM)
            node.wait(10)
            if redis_proc is not None:
                redis_proc.terminate()
                redis_proc.wait(5)


if __name__ == "__main__":
    main()
