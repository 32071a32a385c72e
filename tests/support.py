"""Helpers for tests that run real nodes: start `fleet worker` processes, wait for them to be
ready, signal them, and always clean them up (their whole process group), even on failure."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

APPS = Path(__file__).resolve().parent / "apps"
ROOT = Path(__file__).resolve().parent.parent


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.01,
             message: str = "condition") -> object:
    """Poll `predicate` until it returns something truthy; fail the test after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {message}")
        time.sleep(interval)


def fleet_env(broker_url: str, **extra: str) -> dict[str, str]:
    """Environment for fleet subprocesses: our package and test apps importable, a private
    state directory, and the broker under test."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLEET_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), str(APPS)])
    env["FLEET_BROKER_URL"] = broker_url
    env.update(extra)
    return env


def run_fleet(*args: str, env: dict[str, str], cwd: Path = APPS, timeout: float = 30,
              input: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "fleet", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout, input=input,
                          check=False)


@dataclass
class NodeProcess:
    """A `fleet worker` subprocess in its own session (so its whole group can be killed)."""

    name: str
    proc: subprocess.Popen
    log: Path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_ready(self, timeout: float = 20.0) -> NodeProcess:
        def ready() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"node {self.name} exited with {self.proc.returncode} "
                                     f"before it was ready:\n{self.log_text()}")
            return " ready: " in self.log_text()

        wait_for(ready, timeout, message=f"node {self.name} to be ready")
        return self

    def signal(self, signum: int) -> None:
        os.kill(self.proc.pid, signum)

    def wait(self, timeout: float = 20.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"node {self.name} did not exit within {timeout}s:\n"
                                 f"{self.log_text()}") from None

    def children(self) -> list[int]:
        import psutil

        try:
            return [child.pid for child in psutil.Process(self.pid).children()]
        except psutil.NoSuchProcess:
            return []

    def kill_group(self) -> None:
        """SIGKILL the node's whole process group (everything it started)."""
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


@dataclass
class NodeFactory:
    """Starts nodes for one test; `cleanup()` kills whatever is left."""

    broker_url: str
    workdir: Path
    env_extra: dict[str, str] = field(default_factory=dict)
    nodes: list[NodeProcess] = field(default_factory=list)

    def start(self, *args: str, name: str = "w1", app: str = "testapp", concurrency: int = 2,
              ready: bool = True, env: dict[str, str] | None = None,
              loglevel: str = "info", logfile: str | None = None) -> NodeProcess:
        """Start `fleet worker` with `args`; `logfile` is a --logfile template (default: a
        file of its own in the test's directory)."""
        from fleet.nodenames import format_node, host_format

        template = logfile or str(self.workdir / f"{name}-{len(self.nodes)}.log")
        log = Path(format_node(template, host_format(f"{name}@%h"), 0))
        command = [sys.executable, "-m", "fleet", "worker", "-A", app, "-n", f"{name}@%h",
                   "-c", str(concurrency), "-l", loglevel, "--logfile", template, *args]
        environment = fleet_env(self.broker_url, **{**self.env_extra, **(env or {})})
        with open(log.with_suffix(".err"), "w") as stderr:  # the child keeps its own copy
            proc = subprocess.Popen(command, cwd=APPS, env=environment, start_new_session=True,
                                    stdout=subprocess.DEVNULL, stderr=stderr)
        node = NodeProcess(name, proc, log)
        self.nodes.append(node)
        return node.wait_ready() if ready else node

    def cleanup(self) -> None:
        for node in self.nodes:
            node.kill_group()
