"""Huey with RedisHuey, a consumer of 2 worker processes (`-k process -w 2`)."""

from __future__ import annotations

import importlib
from typing import Any

from suite.peers.base import Peer, check_three


def tasks_module() -> Any:
    return importlib.import_module("huey_tasks")


class HueyPeer(Peer):
    name = "huey"
    label = "Huey"

    def worker_argvs(self, results: bool) -> list[list[str]]:
        return [[str(self.env.bin_dir / "huey_consumer"), "huey_tasks.huey", "-k", "process",
                 "-w", "2", "-q"]]

    def send_noop(self) -> None:
        tasks_module().noop()

    def fill(self, count: int, results: bool) -> None:
        tasks = tasks_module()
        for _ in range(count):
            if results:
                tasks.add(1, 2)
            else:
                tasks.noop()

    def outstanding(self) -> int:
        # the queue list only: a consumer pops one task at a time, so at most 2 are in flight
        return tasks_module().huey.pending_count()

    def roundtrip(self) -> None:
        check_three(tasks_module().add(1, 2).get(blocking=True, timeout=10), self.label)

    def send_incr(self) -> None:
        tasks_module().incr()

    def versions(self) -> dict[str, str]:
        import huey

        return {"huey": huey.__version__}
