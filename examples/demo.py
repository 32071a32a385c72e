"""The README demo: a fleet of three nodes on the embedded SQLite broker, tasks and workflows
sent to it, remote control, and a clean stop.

    python examples/demo.py

It keeps its broker, pid files and logs in a temporary state directory (FLEET_STATE_DIR), so
it leaves nothing behind, and exits non-zero if anything did not behave as shown.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def step(text: str) -> None:
    print(f"\n== {text}", flush=True)


def run(*args: str) -> subprocess.CompletedProcess:
    """Run a `fleet` command like a user would; print what it printed."""
    command = [sys.executable, "-m", "fleet", *args]
    print("$ fleet " + shlex.join(args), flush=True)
    done = subprocess.run(command, cwd=HERE, capture_output=True, text=True, check=False)
    output = (done.stdout + done.stderr).rstrip()
    if output:
        print(output, flush=True)
    return done


def send_tasks() -> bool:
    """Tasks and workflows from Python, with their results; True if all are as expected."""
    from proj.tasks import add, fail, flaky, mul, resize_image, xsum

    from fleet import chain, chord, group
    from fleet.exceptions import RemoteError

    ok = True
    step("send tasks from Python and wait for their results")
    print("add.delay(2, 2).get()               ->", add.delay(2, 2).get(timeout=10))
    squares = group(mul.s(i, i) for i in range(10))().get(timeout=10)
    print("group(mul.s(i, i) ...)()            ->", squares)
    ok &= squares == [i * i for i in range(10)]
    total = chord(add.s(i, i) for i in range(10))(xsum.s()).get(timeout=10)
    print("chord(add.s(i, i) ...)(xsum.s())    ->", total)
    ok &= total == 90
    print("chain(add.s(2, 2) | mul.s(10))()    ->", chain(add.s(2, 2) | mul.s(10))().get(
        timeout=10))
    print("resize_image.delay('cat.png')       ->", resize_image.delay("cat.png").get(
        timeout=10), "(routed to images: only w3 serves it)")
    print("flaky.delay(2) (retried twice)      ->", flaky.delay(2).get(timeout=10))
    try:
        fail.delay("boom").get(timeout=10)
        ok = False
    except (ValueError, RemoteError) as exc:
        print(f"fail.delay('boom')                  -> raised {type(exc).__name__}: {exc}")
    return ok


def main() -> int:
    state = tempfile.mkdtemp(prefix="fleet-demo-")
    os.environ["FLEET_STATE_DIR"] = state
    os.environ.pop("FLEET_BROKER_URL", None)  # the point: no broker configured at all
    sys.path.insert(0, str(HERE))
    ok = True
    step("start a fleet: 3 nodes, 1 child each; w3 also serves the images queue")
    started = run("multi", "start", "3", "-A", "proj", "-c", "1", "-l", "info",
                  "-Q", "default", "-Q:3", "default,images",
                  f"--pidfile={state}/%n.pid", f"--logfile={state}/%n%I.log")
    try:
        if started.returncode != 0:
            print("\nDemo FAILED: the fleet did not start.")
            return 1
        run("multi", "status")
        run("inspect", "ping")

        ok &= send_tasks()

        step("the same from the command line")
        task_id = run("call", "proj.tasks.add", "--args", "[20, 22]").stdout.strip()
        answer = run("result", task_id).stdout.strip()
        ok &= answer == "42"
        run("queues")

        step("stop the fleet: TERM to every node, wait until running tasks finished")
        stopped = run("multi", "stopwait", "--timeout=30")
        ok &= stopped.returncode == 0
        ok &= run("multi", "status").returncode == 3  # 3: not all running (all stopped)
        print("\nlast lines of w1's log:")
        print("\n".join(Path(state, "w1.log").read_text().splitlines()[-4:]))
    finally:
        leftover = subprocess.run([sys.executable, "-m", "fleet", "multi", "kill"], cwd=HERE,
                                  capture_output=True, text=True, check=False)
        if "KILL" in leftover.stdout:
            ok = False
            print("had to kill nodes that were still running:", leftover.stdout)
    if ok:
        shutil.rmtree(state, ignore_errors=True)
    else:
        print(f"\nThe broker, pid files and logs are kept in {state} for a look.")
    print("\nDemo " + ("finished: everything behaved as shown." if ok else "FAILED."))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
