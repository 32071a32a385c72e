"""The jobs a node holds, in one object every part of the node shares; its run states.

A job is one reserved message on its way through the node: prefetched (`buffer`), held
until its ETA (`scheduled`, a heap), held over its task's rate limit (`throttled`), then
running in a child (`active`) until it is settled. The collections are made once and never
replaced, so a part may keep a reference to them.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleet.engine.message import TaskMessage
    from fleet.engine.pool import Child
    from fleet.engine.task import Task
    from fleet.engine.transport.base import Delivery

#: A node's run states (`Node.state`).
RUNNING, WARM, COLD, STOPPED = "running", "warm shutdown", "cold shutdown", "stopped"


@dataclass
class Job:
    delivery: Delivery
    message: TaskMessage
    task: Task
    received: float
    acks_late: bool
    ignore_result: bool
    child: Child | None = None
    started: float | None = None
    soft_deadline: float | None = None
    hard_deadline: float | None = None
    soft_limit: float | None = None
    hard_limit: float | None = None
    soft_sent: bool = False
    terminate: int | None = None  #: signal a remote terminate asked for
    #: When it became ready to run (monotonic): its reception, or its eta for an ETA job.
    due: float = 0.0

    @property
    def label(self) -> str:
        """How logs name it: its task (or the call's `shadow` name) and its id."""
        msg = self.message
        return f"{msg.options.get('shadow') or msg.task}[{msg.id}]"


def first(*values: Any) -> Any:
    """The first value that is not None: a job's option comes from its message, else its
    task, else the node, else the app's settings."""
    for value in values:
        if value is not None:
            return value
    return None


class RevokedSet:
    """The task ids a node refuses to run: each until it expires (epoch seconds), and at
    most `maxlen` of them, the oldest dropped first, so the set never grows without bound
    (`worker_revokes_max`)."""

    def __init__(self, maxlen: int = 50_000):
        self.maxlen = maxlen
        self._expires: collections.OrderedDict[str, float] = collections.OrderedDict()

    def add(self, task_id: str, expires: float = math.inf) -> None:
        self._expires[task_id] = max(expires, self._expires.pop(task_id, expires))
        while len(self._expires) > self.maxlen:
            self._expires.popitem(last=False)

    def update(self, ids: Iterable[str], expires: float = math.inf) -> None:
        for task_id in ids:
            self.add(task_id, expires)

    def __contains__(self, task_id: object) -> bool:
        expires = self._expires.get(task_id)  # type: ignore[call-overload]
        return expires is not None and expires > time.time()

    def purge(self, now: float | None = None) -> int:
        """Forget the expired ids; how many there were."""
        now = time.time() if now is None else now
        gone = [task_id for task_id, expires in self._expires.items() if expires <= now]
        for task_id in gone:
            del self._expires[task_id]
        return len(gone)

    def newest(self, limit: int) -> list[str]:
        """The `limit` ids revoked last that have not expired, newest first."""
        now, found = time.time(), []
        for task_id in reversed(self._expires):
            if len(found) >= limit:
                break
            if self._expires[task_id] > now:
                found.append(task_id)
        return found

    def __iter__(self) -> Iterator[str]:
        now = time.time()
        return iter([task_id for task_id, expires in self._expires.items() if expires > now])

    def __len__(self) -> int:
        return len(self._expires)


class Jobs:
    """Every job a node holds, by where it is; the revoked ids; tasks settled per name."""

    def __init__(self, revokes_max: int = 50_000) -> None:
        self.active: dict[str, Job] = {}  #: delivery id -> job running in a child
        self.buffer: collections.deque[Job] = collections.deque()  #: prefetched, ready
        self.scheduled: list[tuple[float, int, Job]] = []  #: heap of (eta, n, job) held here
        #: Jobs over their task's rate limit, per task name, waiting for a token. They do not
        #: count against the prefetch, so they never keep other tasks from being reserved.
        self.throttled: dict[str, collections.deque[Job]] = {}
        self.revoked = RevokedSet(revokes_max)  #: task ids this node refuses to run
        self.processed: collections.Counter[str] = collections.Counter()  #: settled, by task
        self._sequence = itertools.count()

    def hold_until(self, job: Job, eta: float) -> None:
        """Keep `job` here until its ETA (epoch seconds)."""
        heapq.heappush(self.scheduled, (eta, next(self._sequence), job))

    def release_due(self) -> None:
        """Move the held jobs whose ETA has come to the buffer."""
        now = time.time()
        scheduled = self.scheduled
        while scheduled and scheduled[0][0] <= now:
            _, _, job = heapq.heappop(scheduled)
            job.due = time.monotonic()
            self.buffer.append(job)

    def waiting(self) -> list[Job]:
        """The jobs held over their rate limit, task by task."""
        return [job for jobs in self.throttled.values() for job in jobs]

    def held(self) -> list[tuple[str, Job]]:
        """(where, job) for every job running, prefetched or held until its ETA."""
        return ([("active", job) for job in self.active.values()] +
                [("reserved", job) for job in self.buffer] +
                [("scheduled", job) for _, _, job in self.scheduled])

    def take_unstarted(self) -> list[Job]:
        """Remove and return every job not started yet (prefetched, ETA-held, throttled)."""
        jobs = list(self.buffer) + [job for _, _, job in self.scheduled] + self.waiting()
        self.buffer.clear()
        self.throttled.clear()
        self.scheduled.clear()
        return jobs

    def take_held(self, ids: Iterable[str]) -> list[Job]:
        """Remove and return the prefetched and ETA-held jobs of these task ids."""
        wanted = set(ids)
        held = [job for job in self.buffer if job.message.id in wanted]
        for job in held:
            self.buffer.remove(job)
        waiting = [entry for entry in self.scheduled if entry[2].message.id in wanted]
        if waiting:
            self.scheduled[:] = [entry for entry in self.scheduled if entry not in waiting]
            heapq.heapify(self.scheduled)
        return held + [entry[2] for entry in waiting]
