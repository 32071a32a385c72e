"""The request of the task running in this thread: what a task knows about its own call.

A pool child runs one task at a time, the threads pool one per thread, and a task called
directly (`add(2, 2)`) runs in the caller: either way the running (task, request) pair is
pushed on `_current` (a stack per thread) while it runs. `Task.request` reads it, and a task
that sends other tasks makes itself their parent (`current_request`).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fleet.engine.task import Task


@dataclass
class Request:
    """What a running task knows about its own call (`self.request` in a bound task)."""

    id: str | None = None
    task: str | None = None
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    retries: int = 0
    eta: float | None = None
    expires: float | None = None
    root_id: str | None = None
    parent_id: str | None = None
    group_id: str | None = None
    headers: dict = field(default_factory=dict)
    callbacks: dict = field(default_factory=dict)
    hostname: str | None = None
    delivery_info: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    is_eager: bool = False
    #: Whether the node running it sends task events (then `update_state` sends one).
    send_events: bool = False


class _Stack(threading.local):
    """A list of (task, request) per thread, with the list operations `_current` needs."""

    def __init__(self) -> None:
        self.items: list[tuple[Task, Request]] = []

    def append(self, entry: tuple[Task, Request]) -> None:
        self.items.append(entry)

    def pop(self) -> tuple[Task, Request]:
        return self.items.pop()

    def __bool__(self) -> bool:
        return bool(self.items)

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> tuple[Task, Request]:
        return self.items[index]

    def __setitem__(self, index: int, entry: tuple[Task, Request]) -> None:
        self.items[index] = entry

    def __iter__(self) -> Iterator[tuple[Task, Request]]:
        return iter(self.items)

    def __reversed__(self) -> Iterator[tuple[Task, Request]]:
        return reversed(self.items)


#: The requests of the tasks running in this thread, innermost last.
_current = _Stack()


def current_request() -> Request | None:
    return _current[-1][1] if _current else None
