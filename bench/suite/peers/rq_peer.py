"""RQ: `rq worker-pool -n 2` (each worker forks a work horse per job, RQ's default)."""

from __future__ import annotations

import importlib
from typing import Any

from suite.peers.base import Peer, check_three


def tasks_module() -> Any:
    return importlib.import_module("rq_tasks")


class RqPeer(Peer):
    name = "rq"
    label = "RQ"

    def __init__(self, env):
        super().__init__(env)
        self._queue = None

    @property
    def queue(self) -> Any:
        if self._queue is None:
            from rq import Queue

            self._queue = Queue("default", connection=self.env.redis)
        return self._queue

    def worker_argvs(self, results: bool) -> list[list[str]]:
        return [[str(self.env.bin_dir / "rq"), "worker-pool", "-n", "2", "-u", self.env.redis_url,
                 "--logging-level", "WARNING", "default"]]

    def send_noop(self) -> None:
        self.queue.enqueue(tasks_module().noop, result_ttl=0)

    def fill(self, count: int, results: bool) -> None:
        tasks = tasks_module()
        for _ in range(count):
            if results:
                self.queue.enqueue(tasks.add, 1, 2)
            else:
                self.queue.enqueue(tasks.noop, result_ttl=0)

    def outstanding(self) -> int:
        from rq.registry import StartedJobRegistry

        return self.queue.count + StartedJobRegistry(queue=self.queue).count

    def roundtrip(self) -> None:
        job = self.queue.enqueue(tasks_module().add, 1, 2)
        result = job.latest_result(timeout=10)
        check_three(None if result is None else result.return_value, self.label)

    def send_incr(self) -> None:
        self.queue.enqueue(tasks_module().incr, result_ttl=0)

    def versions(self) -> dict[str, str]:
        import rq

        return {"rq": rq.__version__}
