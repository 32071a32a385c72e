"""Scenario 5, fleet operations: `multi start 10` until all ten answer ping, `inspect ping`
with ten nodes, `multi stopwait` of ten idle nodes, and a CLI's start-up time.

fleet and Celery run side by side. fleet's `multi` and `inspect`/`app.control` come from
other issues; a build without them gets "not available in this build" instead of a figure.
"""

from __future__ import annotations

import abc
import contextlib
import json
import shutil
import statistics
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from suite import procs
from suite.peers.base import Env, Unavailable

NODES = 10
START_TIMEOUT = 120.0


@dataclass
class OpsRun:
    start_to_ping: float  #: seconds from `multi start` until every node answered a ping
    start_command: float  #: seconds the `multi start` command itself took
    ping_api: float  #: seconds `app.control.ping()` took with every node up
    ping_cli: float  #: seconds `<cli> inspect ping` took (a new process)
    stopwait: float  #: seconds `multi stopwait` took
    replies: int  #: nodes that answered the API ping


def count_replies(replies: Any) -> int:
    """Nodes in a ping answer: Celery's list of {node: reply}, or a dict keyed by node."""
    if isinstance(replies, dict):
        return len(replies)
    names: set[str] = set()
    for item in replies or []:
        if isinstance(item, dict):
            names.update(item)
        else:
            names.add(str(item))
    return len(names)


class Framework(abc.ABC):
    """What ops needs from one framework: its multi argv, its ping, its CLI."""

    name = "?"

    def __init__(self, env: Env):
        self.env = env
        self.state = Path(tempfile.mkdtemp(prefix=f"{self.name}-multi-", dir=env.workdir))

    def available(self) -> None:
        """Raise Unavailable when this build lacks what the scenario needs."""
        return

    @abc.abstractmethod
    def multi_argv(self, command: str) -> list[str]:
        """The `<cli> multi COMMAND ...` command line for the ten nodes (celery repeats the
        start arguments for stopwait; fleet multi remembers them)."""

    @abc.abstractmethod
    def ping(self, timeout: float) -> int:
        """Ping every node from this process; how many answered within `timeout`."""

    @abc.abstractmethod
    def ping_cli_argv(self) -> list[str]:
        """The `<cli> inspect ping` command line."""

    @abc.abstractmethod
    def version_argv(self) -> list[str]:
        """The `<cli> --version` command line."""

    def env_vars(self) -> dict[str, str]:
        return dict(self.env.base_env)

    def node_processes(self) -> list[psutil.Process]:
        """The live nodes whose pid files are in this run's directory, and their children.

        Detached nodes leave our process groups, and their titles (setproctitle) overwrite
        the environment that `procs.ours()` reads, so their pid files are how we find them.
        """
        found = []
        for pidfile in self.state.glob("*.pid"):
            with contextlib.suppress(OSError, ValueError, psutil.Error):
                node = psutil.Process(int(pidfile.read_text().split()[0]))
                if self.name in " ".join(node.cmdline()).lower():
                    found += [node, *node.children(recursive=True)]
        return found

    def kill_nodes(self) -> None:
        """SIGKILL every node of ours that is still alive, with its pool."""
        nodes = self.node_processes()
        for proc in nodes:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        psutil.wait_procs(nodes, timeout=5)

    def run(self, argv: list[str], what: str, timeout: float = START_TIMEOUT) -> float:
        log = self.env.log(f"ops-{self.name}-{what}")
        status, seconds = procs.run(argv, self.env_vars(), self.env.apps_dir, log, timeout)
        if status != 0:
            tail = log.read_text(errors="replace")[-1500:]
            raise RuntimeError(f"{' '.join(argv[:3])} ... exited {status}:\n{tail}")
        return seconds


class CeleryOps(Framework):
    name = "celery"

    def multi_argv(self, command: str) -> list[str]:
        return [str(self.env.bin_dir / "celery"), "multi", command, str(NODES), "-A",
                "celery_tasks", "-c", "2", "-l", "warning", f"--workdir={self.env.apps_dir}",
                f"--pidfile={self.state}/%n.pid", f"--logfile={self.state}/%n%I.log"]

    def ping(self, timeout: float) -> int:
        import celery_tasks

        return count_replies(celery_tasks.app.control.ping(timeout=timeout))

    def ping_cli_argv(self) -> list[str]:
        return [str(self.env.bin_dir / "celery"), "-A", "celery_tasks", "inspect", "ping"]

    def version_argv(self) -> list[str]:
        return [str(self.env.bin_dir / "celery"), "--version"]


class FleetOps(Framework):
    name = "fleet"

    def env_vars(self) -> dict[str, str]:
        return {**self.env.base_env, "FLEET_STATE_DIR": str(self.state),
                "FLEET_BROKER_URL": self.env.redis_url}

    def available(self) -> None:
        missing = [" ".join(cmd) for cmd in (["multi"], ["inspect", "ping"])
                   if subprocess.run([str(self.env.bin_dir / "fleet"), *cmd, "--help"],
                                     capture_output=True, env=self.env_vars(),
                                     check=False).returncode != 0]
        if missing:
            names = "`, `fleet ".join(missing)
            raise Unavailable(f"not available in this build (no `fleet {names}`)")

    def multi_argv(self, command: str) -> list[str]:
        if command != "start":  # after start, multi remembers the nodes and their options
            return [str(self.env.bin_dir / "fleet"), "multi", command]  # (all of them)
        return [str(self.env.bin_dir / "fleet"), "multi", command, str(NODES), "-A",
                "fleet_tasks", "-b", self.env.redis_url, "-c", "2", "-l", "warning",
                f"--pidfile={self.state}/%n.pid", f"--logfile={self.state}/%n%I.log"]

    def ping(self, timeout: float) -> int:
        import fleet_tasks

        app = fleet_tasks.app
        if app.conf.broker_url != self.env.redis_url:
            app.close()
            app.conf.update(broker_url=self.env.redis_url)
        control = getattr(app, "control", None)
        if control is not None and hasattr(control, "ping"):
            return count_replies(control.ping(timeout=timeout))
        done = subprocess.run([*self.ping_cli_argv(), "--json", "-t", str(timeout)],
                              capture_output=True, text=True, env=self.env_vars(),
                              cwd=self.env.apps_dir, check=False)
        return count_replies(json.loads(done.stdout)) if done.stdout.strip() else 0

    def ping_cli_argv(self) -> list[str]:
        return [str(self.env.bin_dir / "fleet"), "-A", "fleet_tasks", "-b", self.env.redis_url,
                "inspect", "ping"]

    def version_argv(self) -> list[str]:
        return [str(self.env.bin_dir / "fleet"), "--version"]


def wait_all_answer(framework: Framework, deadline: float) -> int:
    while True:
        answered = framework.ping(timeout=0.25)
        if answered >= NODES or time.monotonic() > deadline:
            return answered
        time.sleep(0.01)


def measure(framework: Framework) -> OpsRun:
    """One start / ping / stopwait cycle of ten idle nodes."""
    framework.available()
    shutil.rmtree(framework.state, ignore_errors=True)
    framework.state.mkdir()
    started = time.perf_counter()
    try:
        command = framework.run(framework.multi_argv("start"), "start")
        answered = wait_all_answer(framework, time.monotonic() + START_TIMEOUT)
        up = time.perf_counter() - started
        if answered < NODES:
            raise RuntimeError(f"only {answered} of {NODES} {framework.name} nodes answered")
        pinged = time.perf_counter()
        replies = framework.ping(timeout=1.0)
        ping_api = time.perf_counter() - pinged
        ping_cli = framework.run(framework.ping_cli_argv(), "ping")
        stopwait = framework.run(framework.multi_argv("stopwait"), "stopwait")
    finally:
        framework.kill_nodes()
        procs.kill_strays()
    return OpsRun(up, command, ping_api, ping_cli, stopwait, replies)


def startup_time(framework: Framework, repeat: int = 5) -> float:
    """Median seconds of `<cli> --version` (a new process each time)."""
    times = [framework.run(framework.version_argv(), "version", timeout=30)
             for _ in range(repeat)]
    return statistics.median(times)
