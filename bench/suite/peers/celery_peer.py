"""Celery 5 with its Redis broker and Redis result backend, prefork pool of 2."""

from __future__ import annotations

import importlib
from typing import Any

from suite.peers.base import Peer, check_three


def tasks_module() -> Any:
    return importlib.import_module("celery_tasks")


class CeleryPeer(Peer):
    name = "celery"
    label = "Celery"
    scenarios = Peer.scenarios | {"ops"}

    def worker_argvs(self, results: bool) -> list[list[str]]:
        return [[str(self.env.bin_dir / "celery"), "-A", "celery_tasks", "worker", "-c", "2",
                 "-P", "prefork", "-l", "warning", "-n", "celery-bench@%h"]]

    def send_noop(self) -> None:
        tasks_module().noop.delay()

    def fill(self, count: int, results: bool) -> None:
        tasks = tasks_module()
        for _ in range(count):
            if results:
                tasks.add.delay(1, 2)
            else:
                tasks.noop.delay()

    def outstanding(self) -> int:
        # kombu's Redis transport: waiting messages in the list, delivered-but-unacked in the
        # hash (Celery acks just before running a task, so this counts tasks not yet started)
        pipe = self.env.redis.pipeline(transaction=False)
        pipe.llen("celery").hlen("unacked")
        waiting, unacked = pipe.execute()
        return waiting + unacked

    def roundtrip(self) -> None:
        check_three(tasks_module().add.delay(1, 2).get(timeout=10), self.label)

    def send_incr(self) -> None:
        tasks_module().incr.delay()

    def versions(self) -> dict[str, str]:
        import celery
        import kombu

        return {"celery": celery.__version__, "kombu": kombu.__version__}
