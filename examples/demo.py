#!/usr/bin/env python3
"""The README demo: a real node on the embedded SQLite broker, some tasks, a clean stop.

    python examples/demo.py

It keeps its broker in a temporary state directory (FLEET_STATE_DIR), so it leaves nothing
behind, and exits non-zero if anything did not behave as shown.
"""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def fleet(*args: str) -> str:
    """Run a `fleet` command like a user would, print and return its output."""
    command = [sys.executable, "-m", "fleet", *args]
    print("$ fleet " + shlex.join(args), flush=True)
    done = subprocess.run(command, cwd=HERE, capture_output=True, text=True, check=False)
    output = (done.stdout + done.stderr).rstrip()
    if output:
        print(output, flush=True)
    return done.stdout.strip()


def wait_until_ready(log: Path, node: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if log.exists() and " ready: " in log.read_text():
            return
        if node.poll() is not None:
            sys.exit(f"the node exited early ({node.returncode}):\n{log.read_text()}")
        time.sleep(0.05)
    sys.exit(f"the node did not become ready in {timeout:.0f}s:\n{log.read_text()}")


def main() -> int:
    state = tempfile.mkdtemp(prefix="fleet-demo-")
    os.environ["FLEET_STATE_DIR"] = state
    os.environ.pop("FLEET_BROKER_URL", None)  # the point: no broker configured at all
    sys.path.insert(0, str(HERE))
    from proj.tasks import add, fail, flaky, mul, xsum

    from fleet.exceptions import RemoteError

    log = Path(state) / "w1.log"
    step("start a node: 2 prefork children, embedded SQLite broker (no server)")
    command = [sys.executable, "-m", "fleet", "worker", "-A", "proj", "-n", "w1@%h", "-c", "2",
               "-l", "info", "--logfile", str(log)]
    print("$ fleet " + shlex.join(command[3:]), flush=True)
    node = subprocess.Popen(command, cwd=HERE)
    ok = True
    try:
        wait_until_ready(log, node)
        print(f"node ready (pid {node.pid}); broker: {state}/broker.db")

        step("send tasks from Python and wait for their results")
        print("add.delay(2, 2).get()            ->", add.delay(2, 2).get(timeout=10))
        results = [mul.delay(i, i) for i in range(10)]
        squares = [r.get(timeout=10) for r in results]
        print("[mul.delay(i, i) ...]            ->", squares)
        ok &= squares == [i * i for i in range(10)]
        print("xsum.delay(list(range(100)))     ->", xsum.delay(list(range(100))).get(timeout=10))
        print("flaky.delay(2) (retried twice)   ->", flaky.delay(2).get(timeout=10))
        try:
            fail.delay("boom").get(timeout=10)
            ok = False
        except (ValueError, RemoteError) as exc:
            print(f"fail.delay('boom')               -> raised {type(exc).__name__}: {exc}")

        step("the same from the command line")
        task_id = fleet("call", "proj.tasks.add", "--args", "[20, 22]")
        answer = fleet("result", task_id)
        ok &= answer == "42"
        fleet("queues")

        step("stop the node: TERM is a warm shutdown (running tasks finish)")
        node.send_signal(signal.SIGTERM)
        code = node.wait(30)
        print(f"node exited with code {code}")
        ok &= code == 0
        print("\nlast lines of the node's log:")
        print("\n".join(log.read_text().splitlines()[-6:]))
    finally:
        if node.poll() is None:
            node.kill()
            node.wait()
    print("\nDemo " + ("finished: everything behaved as shown." if ok else "FAILED."))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
