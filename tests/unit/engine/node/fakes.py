"""A node without processes for the node's unit tests: a real `Node` on a memory broker whose
pool is a `FakePool` (children that are records, not processes)."""

from __future__ import annotations

import contextlib
import os
import signal
import time
import uuid

from fleet import Fleet
from fleet.engine.node.jobs import Job
from fleet.engine.pool import Child
from fleet.engine.sending import build_message
from fleet.engine.transport.base import Delivery
from fleet.engine.worker import Node, NodeOptions


class FakePool:
    """Children that are up and idle, and record what the node does to them."""

    can_signal = True  #: (as the prefork pool)

    def __init__(self, size: int = 2):
        self.concurrency = size
        self.children: dict[int, Child] = {}
        self.sent: list[tuple[int, dict, str]] = []  #: (slot, header, body) per task sent
        self.signals: list[tuple[int, int]] = []  #: (slot, signal)
        self.retired: list[int] = []  #: slots whose task pipe was closed
        self.spawned: list[int] = []
        self.terminating: dict[int, float] = {}
        self.exited: list[tuple[Child, int]] = []  #: what the next reap returns
        self._pipes: list[int] = []
        for slot in range(1, size + 1):
            self.add(slot, up=True)

    def add(self, slot: int, up: bool = False) -> Child:
        read, write = os.pipe()
        self._pipes += [read, write]
        child = Child(slot, 1000 + len(self._pipes), write, read, up=up)
        self.children[child.pid] = child
        return child

    def spawn(self, slot: int) -> Child:
        self.spawned.append(slot)
        return self.add(slot)

    def free_slots(self) -> list[int]:
        used = {child.slot for child in self.children.values()
                if not (child.retiring and child.job is None)}
        return [slot for slot in range(1, self.concurrency + 1) if slot not in used]

    def send(self, child: Child, header: dict, payload: str) -> None:
        self.sent.append((child.slot, header, payload))

    def read(self, child: Child) -> tuple[list, bool]:
        return [], False

    def retire(self, child: Child) -> None:
        self.retired.append(child.slot)
        child.task_fd = -1

    def kill(self, child: Child, signum: int, reason: str | None = None) -> None:
        self.signals.append((child.slot, signum))
        if reason and not child.killed_for:
            child.killed_for = reason

    kill_group = kill

    def terminate(self, child: Child, grace: float, reason: str) -> None:
        self.kill_group(child, signal.SIGTERM, reason)
        self.retire(child)
        self.terminating[child.pid] = time.monotonic() + grace

    def escalate(self, now: float) -> None:
        pass

    def reap(self) -> list[tuple[Child, int]]:
        exited, self.exited = self.exited, []
        for child, _ in exited:
            self.children.pop(child.pid, None)
        return exited

    def close_result_pipe(self, child: Child) -> None:
        child.result_fd = -1

    def pids(self) -> list[int]:
        return sorted(self.children)

    def close(self) -> None:
        for fd in self._pipes:
            with contextlib.suppress(OSError):
                os.close(fd)


def make_app() -> Fleet:
    """An app on its own memory broker: units.slow (1/h), units.fast, units.late (acks-late,
    requeued when its child dies), units.limited (soft 1s, hard 2s)."""
    app = Fleet("units", broker=f"memory://{uuid.uuid4().hex}")

    @app.task(name="units.slow", rate_limit="1/h")
    def slow(x):
        return x

    @app.task(name="units.fast")
    def fast(x):
        return x

    @app.task(name="units.late", acks_late=True, reject_on_worker_lost=True)
    def late(x):
        return x

    @app.task(name="units.limited", soft_time_limit=1.0, time_limit=2.0)
    def limited(x):
        return x

    return app


def make_node(app: Fleet, concurrency: int = 2, connect: bool = True, **options) -> Node:
    """A node with a FakePool of `concurrency` idle children, connected to the memory broker
    (registered and subscribed), ready: what a started node looks like, without processes."""
    node = Node(app, NodeOptions("unit@test", ["default"], concurrency=concurrency, **options))
    node.children.pool = FakePool(concurrency)
    if connect:
        node.consumer.connect(node.signals)
        node.ready = True
    return node


def close_node(node: Node) -> None:
    node.children.pool.close()
    node.selector.close()
    node.signals.close()


def job(app: Fleet, name: str, x: int = 0, **options) -> Job:
    """A received job of task `units.<name>`, as the dispatcher makes them."""
    msg = build_message(app, f"units.{name}", (x,), {}, options)
    task = app.tasks[msg.task]
    job = Job(Delivery(msg.id, "default", msg.encode()), msg, task, time.monotonic(),
              acks_late=bool(options.get("acks_late", task.acks_late)),
              ignore_result=bool(options.get("ignore_result", task.ignore_result)))
    job.due = job.received
    return job


def started(node: Node) -> list[str]:
    """The jobs running now, as 'fast4' (task name without 'units.', and its argument)."""
    return [job.message.task.split(".")[1] + str(job.message.args[0])
            for job in node.jobs.active.values()]
