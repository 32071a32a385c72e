"""The processes of a run: its own redis-server (append-only file on, restartable on the same
port and data), the fleet of nodes driven through `fleet multi`, and the guarantee that
nothing outlives the run.

Every process a run starts carries CHAOS_RUN_ID=<run id> in its environment (detached nodes
included: `fleet multi` passes its environment on), so `kill_run` finds them all, and only
them, by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import redis

RUN_ENV = "CHAOS_RUN_ID"
SYSTEM_REDIS_PORT = 6379
BENCH = Path(__file__).resolve().parent.parent
ROOT = BENCH.parent


def free_port() -> int:
    """A port nobody listens on now (the kernel's pick), never the system Redis port."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port != SYSTEM_REDIS_PORT:
            return port


def base_env(run_id: str) -> dict[str, str]:
    """The environment of everything the run starts: no FLEET_* from outside, fleet and the
    chaos app importable, and the run id."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLEET_")}
    env["PYTHONPATH"] = os.pathsep.join([str(BENCH), str(ROOT)])
    env[RUN_ENV] = run_id
    return env


@dataclass
class RedisServer:
    """redis-server on a free loopback port with `appendonly yes`, data in `workdir`."""

    workdir: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise SystemExit("chaos: redis-server not found; install it (apt-get install -y "
                             "redis-server) or run with --broker sqlite")
        argv = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
                str(self.workdir), "--appendonly", "yes", "--appendfsync", "everysec",
                "--save", "", "--logfile", str(self.workdir / "redis.log")]
        self.proc = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"chaos: redis-server did not start on port {self.port}; "
                                 f"see {self.workdir / 'redis.log'}")
            time.sleep(0.02)

    def answers(self) -> bool:
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2, socket_timeout=0.5)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self, timeout: float = 10.0) -> None:
        """TERM (redis-server then writes its append-only file and exits), KILL if it hangs."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


@dataclass
class Nodes:
    """The fleet under test, driven like an operator would: `fleet multi` commands."""

    rundir: Path
    env: dict[str, str]
    count: int
    concurrency: int

    @property
    def names(self) -> list[str]:
        return [f"w{i}" for i in range(1, self.count + 1)]

    def multi(self, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "fleet", "multi", *args], cwd=BENCH,
                              env=self.env, capture_output=True, text=True, timeout=timeout,
                              check=False)

    def start(self) -> subprocess.CompletedProcess:
        return self.multi("start", str(self.count), "-A", "chaos_suite.tasks", "-c",
                          str(self.concurrency), "-l", "warning",
                          f"--pidfile={self.rundir}/%n.pid", f"--logfile={self.rundir}/%n%I.log")

    def start_one(self, name: str) -> subprocess.CompletedProcess:
        """What an operator (or systemd) does for a node that died: start it again with its
        remembered arguments (`multi restart`: the stale pid file goes, the node starts;
        `multi start w1` would mean a new node w1 without options)."""
        return self.multi("restart", name)

    def ping(self) -> list[str]:
        """The nodes that answer `fleet inspect ping` (remote control works end to end)."""
        done = subprocess.run([sys.executable, "-m", "fleet", "inspect", "ping", "--json",
                               "--timeout", "3"], cwd=BENCH, env=self.env, capture_output=True,
                              text=True, timeout=30, check=False)
        try:
            return sorted(json.loads(done.stdout))
        except ValueError:
            return []

    def pid(self, name: str) -> int | None:
        """The node's main pid from its pid file ("<pid> <node name>"), if it is alive."""
        try:
            pid = int((self.rundir / f"{name}.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if psutil.pid_exists(pid) else None

    def children(self, pid: int) -> list[psutil.Process]:
        with contextlib.suppress(psutil.Error):
            return psutil.Process(pid).children()
        return []

    def logs(self) -> list[Path]:
        return sorted(self.rundir.glob("w*.log"))


def ours(run_id: str) -> list[psutil.Process]:
    """Live processes that carry this run's id (whatever became of their parents)."""
    found = []
    for proc in psutil.process_iter():
        if proc.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            if proc.environ().get(RUN_ENV) == run_id:
                found.append(proc)
    return found


def kill_run(run_id: str) -> int:
    """SIGCONT then SIGKILL every process of the run (a frozen one too); how many."""
    procs = ours(run_id)
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGCONT)
            proc.kill()
    psutil.wait_procs(procs, timeout=5)
    return len(procs)
