"""fleet on the suite's Redis, and fleet on its embedded SQLite broker (scenario 6)."""

from __future__ import annotations

import importlib
import itertools
from typing import Any

from suite.peers.base import Env, Peer, Unavailable, check_three

_files = itertools.count()


def tasks_module() -> Any:
    return importlib.import_module("fleet_tasks")


def find_group() -> Any:
    """fleet's canvas `group`, if this build has one (issue 5), else None."""
    for source in ("fleet", "fleet.canvas"):
        try:
            return importlib.import_module(source).group
        except (ImportError, AttributeError):
            continue
    return None


class FleetPeer(Peer):
    name = "fleet"
    label = "fleet"

    def __init__(self, env: Env):
        super().__init__(env)
        self.url = env.redis_url

    def worker_argvs(self, results: bool) -> list[list[str]]:
        return [[str(self.env.bin_dir / "fleet"), "worker", "-A", "fleet_tasks", "-b", self.url,
                 "-c", "2", "-l", "warning", "-n", f"{self.name}@%h"]]

    def worker_env(self) -> dict[str, str]:
        return {**self.env.base_env, "FLEET_BROKER_URL": self.url}

    @property
    def app(self) -> Any:
        return tasks_module().app

    def prepare(self) -> None:
        app = self.app
        if app.conf.broker_url != self.url:
            app.close()
            app.conf.update(broker_url=self.url)

    def send_noop(self) -> None:
        tasks_module().noop.delay()

    def send_noops_batched(self, count: int) -> str:
        group = find_group()
        noop = tasks_module().noop
        if group is None or not hasattr(noop, "s"):
            raise Unavailable("not available in this build (no canvas group / Task.s)")
        group(noop.s() for _ in range(count)).apply_async()
        return "group(noop.s() for _ in range(N)).apply_async()"

    def send_noops_put(self, count: int) -> None:
        """`count` no-op messages in one `Transport.put` (internal; for orientation only)."""
        self.put_many(tasks_module().noop, (), count)

    def put_many(self, task: Any, args: tuple, count: int) -> None:
        from fleet.engine.task import build_message
        from fleet.engine.transport.base import Outgoing

        app = self.app
        batch = []
        for _ in range(count):
            msg = build_message(app, task.name, args, {}, {}, task)
            batch.append(Outgoing(msg.id, msg.queue, msg.encode(), msg.priority, msg.eta))
        app.broker.put(batch)

    def fill_fast(self, count: int, results: bool) -> None:
        """Queue a drain's tasks in one put: only for profiles, which need a long drain."""
        tasks = tasks_module()
        self.put_many(tasks.add if results else tasks.noop, (1, 2) if results else (), count)

    def fill(self, count: int, results: bool) -> None:
        tasks = tasks_module()
        for _ in range(count):
            if results:
                tasks.add.delay(1, 2)
            else:
                tasks.noop.delay()

    def outstanding(self) -> int:
        stats = {stat.name: stat for stat in self.app.broker.queue_stats()}.get("default")
        return 0 if stats is None else stats.ready + stats.reserved

    def roundtrip(self) -> None:
        check_three(tasks_module().add.delay(1, 2).get(timeout=10), self.label)

    def send_incr(self) -> None:
        tasks_module().incr.delay()

    def versions(self) -> dict[str, str]:
        import fleet

        return {"fleet": fleet.__version__}


class FleetSqlitePeer(FleetPeer):
    """The embedded broker: a fresh SQLite file per measurement, in the suite's workdir."""

    name = "fleet-sqlite"
    label = "fleet (SQLite)"
    scenarios = frozenset({"drain", "roundtrip"})

    def __init__(self, env: Env):
        super().__init__(env)
        self.url = self._new_url()

    def _new_url(self) -> str:
        return f"sqlite:///{self.env.workdir / f'broker-{next(_files)}.db'}"

    def prepare(self) -> None:
        self.url = self._new_url()
        super().prepare()

    def versions(self) -> dict[str, str]:
        return {}
