#!/usr/bin/env python3
"""Round trip and enqueue, fleet alone: quick figures while working on the client path.

    bench/roundtrip.py [--broker redis|sqlite|all] [-n 500] [--enqueue 5000] [--profile]

For each broker: starts one node (`fleet worker -c 2`, log level warning) on the task set of
bench/apps/fleet_tasks.py, then measures

- round trip: `add.delay(1, 2).get()` n times in a row, p50 / p99 / max in ms;
- enqueue: `noop.delay()` one call at a time (calls/s), a bare redis-py LPUSH loop on the
  same server for the floor (Redis only), and `group(noop.s() ...).apply_async()` of the
  same N (tasks/s), with no node consuming.

Redis is a private redis-server on a free port of 127.0.0.1 (never 6379), stopped at the
end; SQLite lives in a temporary directory. `--profile` prints cProfile's top entries of
the client side. Not part of the test suite; figures on a shared machine vary a lot.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE / "apps"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_redis(directory: str) -> tuple[subprocess.Popen, str]:
    server = shutil.which("redis-server")
    if not server:
        sys.exit("redis-server not found (apt-get install -y redis-server)")
    port = free_port()
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", directory],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    import redis

    client = redis.Redis(port=port)
    for _ in range(200):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.02)
    return proc, f"redis://127.0.0.1:{port}/0"


def start_node(url: str, workdir: str, concurrency: int = 2) -> subprocess.Popen:
    log = Path(workdir) / f"node-{time.time_ns()}.log"
    env = {**os.environ, "FLEET_BROKER_URL": url,
           "PYTHONPATH": os.pathsep.join([str(HERE / "apps"), str(HERE.parent)])}
    node = subprocess.Popen([sys.executable, "-m", "fleet", "worker", "-A", "fleet_tasks",
                             "-b", url, "-c", str(concurrency), "-l", "warning",
                             "--logfile", str(log),
                             "-n", f"rt{time.time_ns()}@%h"],
                            env=env, cwd=workdir, start_new_session=True)
    return node


def profiled(enabled: bool, action):
    if not enabled:
        return action()
    profile = cProfile.Profile()
    value = profile.runcall(action)
    out = io.StringIO()
    pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(18)
    print(out.getvalue())
    return value


def roundtrips(tasks, count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        assert tasks.add.delay(1, 2).get(timeout=10) == 3
        times.append((time.perf_counter() - start) * 1000)
    return times


def enqueue(tasks, count: int) -> float:
    start = time.perf_counter()
    for _ in range(count):
        tasks.noop.delay()
    return count / (time.perf_counter() - start)


def bare_lpush(url: str, count: int) -> float:
    import redis

    client = redis.Redis.from_url(url)
    client.ping()
    start = time.perf_counter()
    for i in range(count):
        client.lpush("bare:q", f'{{"n": {i}}}')
    rate = count / (time.perf_counter() - start)
    client.delete("bare:q")
    return rate


def group_send(tasks, count: int) -> float:
    from fleet import group

    start = time.perf_counter()
    group(tasks.noop.s() for _ in range(count)).apply_async()
    return count / (time.perf_counter() - start)


def measure(kind: str, url: str, args, workdir: str) -> None:
    os.environ["FLEET_BROKER_URL"] = url
    import fleet_tasks as tasks

    tasks.app.close()
    tasks.app.conf.update(broker_url=url)
    node = start_node(url, workdir)
    try:
        deadline = time.monotonic() + 20
        while True:  # ready when a round trip works
            try:
                tasks.add.delay(1, 2).get(timeout=0.5)
                break
            except Exception as exc:
                if node.poll() is not None or time.monotonic() > deadline:
                    sys.exit(f"the node did not start: {exc!r}")
        roundtrips(tasks, 20)  # warm up
        times = profiled(args.profile, lambda: roundtrips(tasks, args.n))
        q = statistics.quantiles(times, n=100)
        print(f"{kind:6s} round trip x{args.n}: p50 {q[49]:.2f} ms, p99 {q[98]:.2f} ms, "
              f"max {max(times):.2f} ms")
    finally:
        os.killpg(node.pid, signal.SIGTERM)
        node.wait(10)
    if args.enqueue:
        tasks.app.broker.purge(["default"])
        enqueue(tasks, 200)
        rate = profiled(args.profile, lambda: enqueue(tasks, args.enqueue))
        line = f"{kind:6s} enqueue x{args.enqueue}: {rate:,.0f} calls/s"
        if kind == "redis":
            bare = bare_lpush(url, args.enqueue)
            line += f"; bare LPUSH {bare:,.0f}/s ({rate / bare:.2f}x)"
        print(line)
        tasks.app.broker.purge(["default"])
        rate = group_send(tasks, args.enqueue)
        print(f"{kind:6s} group send of {args.enqueue}: {rate:,.0f} tasks/s")
        tasks.app.broker.purge(["default"])
    tasks.app.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=500, help="round trips")
    parser.add_argument("--enqueue", type=int, default=5000, help="enqueue N (0: skip)")
    parser.add_argument("--broker", choices=["sqlite", "redis", "all"], default="redis")
    parser.add_argument("--profile", action="store_true", help="cProfile the client side")
    args = parser.parse_args()
    if args.broker == "all":  # one process per broker: the app binds its broker once
        for kind in ("redis", "sqlite"):
            argv = ["-n", str(args.n), "--enqueue", str(args.enqueue)]
            argv += ["--profile"] if args.profile else []
            subprocess.run([sys.executable, __file__, *argv, f"--broker={kind}"], check=True)
        return
    with tempfile.TemporaryDirectory() as workdir:
        kinds = [args.broker]
        redis_proc = None
        try:
            for kind in kinds:
                if kind == "redis":
                    redis_proc, url = start_redis(workdir)
                else:
                    url = f"sqlite:///{workdir}/bench.db"
                measure(kind, url, args, workdir)
        finally:
            if redis_proc is not None:
                redis_proc.terminate()
                redis_proc.wait(5)


if __name__ == "__main__":
    main()
