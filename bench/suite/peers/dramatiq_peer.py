"""Dramatiq with its Redis broker: 2 worker processes of 1 thread each (concurrency 2)."""

from __future__ import annotations

import importlib
from typing import Any

from suite.peers.base import Peer, check_three


def tasks_module() -> Any:
    return importlib.import_module("dramatiq_tasks")


class DramatiqPeer(Peer):
    name = "dramatiq"
    label = "Dramatiq"

    def worker_argvs(self, results: bool) -> list[list[str]]:
        return [[str(self.env.bin_dir / "dramatiq"), "dramatiq_tasks", "--processes", "2",
                 "--threads", "1"]]

    def send_noop(self) -> None:
        tasks_module().noop.send()

    def fill(self, count: int, results: bool) -> None:
        tasks = tasks_module()
        for _ in range(count):
            if results:
                tasks.add.send(1, 2)
            else:
                tasks.noop.send()

    def outstanding(self) -> int:
        # the Redis broker keeps every message in <queue>.msgs until it is acked
        return self.env.redis.hlen("dramatiq:default.msgs")

    def roundtrip(self) -> None:
        tasks = tasks_module()
        message = tasks.add.send(1, 2)
        check_three(message.get_result(backend=tasks.backend, block=True, timeout=10_000),
                    self.label)

    def send_incr(self) -> None:
        tasks_module().incr.send()

    def versions(self) -> dict[str, str]:
        import dramatiq

        return {"dramatiq": dramatiq.__version__}
