"""The interface every framework implements, and the environment the suite gives it.

A peer knows how to start its worker (a real subprocess, concurrency 2, logging at warning),
send the shared task set (`noop`, `add`, `incr`) from this process, and tell how many queued
tasks are still outstanding. The scenarios do the timing; peers never measure.
"""

from __future__ import annotations

import abc
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from suite import procs

COUNTER = "bench:counter"


class Unavailable(Exception):
    """This peer (or this build of fleet) cannot do what a scenario asks; the text says why."""


@dataclass
class Env:
    redis_url: str
    apps_dir: Path
    workdir: Path
    bin_dir: Path  # the bench virtualenv's bin/ (celery, huey_consumer, dramatiq, rq, fleet)
    base_env: dict[str, str] = field(default_factory=dict)
    _redis: redis.Redis | None = None

    @property
    def redis(self) -> redis.Redis:
        if self._redis is None:
            self._redis = redis.Redis.from_url(self.redis_url)
        return self._redis

    def log(self, name: str) -> Path:
        logs = self.workdir / "logs"
        logs.mkdir(exist_ok=True)
        return logs / f"{name}.log"


class Peer(abc.ABC):
    name = "?"  #: key in the raw JSON
    label = "?"  #: how RESULTS.md names it
    scenarios: frozenset[str] = frozenset({"enqueue", "drain", "roundtrip", "memory"})

    def __init__(self, env: Env):
        self.env = env
        self._runs = 0

    # -- the worker -----------------------------------------------------------------------

    @abc.abstractmethod
    def worker_argvs(self, results: bool) -> list[list[str]]:
        """One argv per process to start (a framework's worker is usually one command)."""

    def worker_env(self) -> dict[str, str]:
        return dict(self.env.base_env)

    def start_worker(self, results: bool = False) -> procs.Group:
        self._runs += 1
        group = procs.Group()
        for index, argv in enumerate(self.worker_argvs(results)):
            log = self.env.log(f"{self.name}-{self._runs}-{index}")
            group.procs.append(procs.spawn(argv, self.worker_env(), self.env.apps_dir, log))
        return group

    def wait_consuming(self, group: procs.Group, timeout: float = 60.0) -> None:
        """Send `incr` and wait until it ran: the worker is up and consuming."""
        before = int(self.env.redis.get(COUNTER) or 0)
        self.send_incr()
        deadline = time.monotonic() + timeout
        while int(self.env.redis.get(COUNTER) or 0) <= before:
            dead = group.exited()
            if dead is not None:
                raise RuntimeError(f"{self.label} worker exited with status {dead.returncode} "
                                   f"before consuming; see {self.env.workdir / 'logs'}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.label} worker ran no task within {timeout:g}s")
            time.sleep(0.005)

    # -- the client side ------------------------------------------------------------------

    def prepare(self) -> None:
        """Called before each measurement, after the Redis database was emptied."""
        return

    @abc.abstractmethod
    def send_noop(self) -> None:
        """Send one `noop()` the framework's usual way (`noop.delay()` or its equivalent)."""

    def send_noops_batched(self, count: int) -> str:
        """Send `count` no-ops as one batch; return how (the API used). Unavailable if none."""
        raise Unavailable("no batched send")

    @abc.abstractmethod
    def fill(self, count: int, results: bool) -> None:
        """Queue `count` tasks for a drain: `noop()` (results off) or `add(1, 2)` (on)."""

    @abc.abstractmethod
    def outstanding(self) -> int:
        """Queued tasks not yet done (or not yet started, where the broker cannot tell)."""

    @abc.abstractmethod
    def roundtrip(self) -> None:
        """`add(1, 2)`, wait for its result (3)."""

    @abc.abstractmethod
    def send_incr(self) -> None:
        """Send one `incr()` (it INCRs bench:counter)."""

    def versions(self) -> dict[str, str]:
        return {}


def check_three(value: object, label: str) -> None:
    if value != 3:
        raise RuntimeError(f"{label}: add(1, 2) returned {value!r}")
