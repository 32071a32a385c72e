"""The request of the task running in this process: what a task knows about its own call.

A pool child runs one task at a time, and a task called directly (`add(2, 2)`) runs in the
caller: either way the running (task, request) pair is pushed on `_current` while it runs.
`Task.request` reads it, and a task that sends other tasks makes itself their parent
(`current_request`).
"""

from __future__ import annotations

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


#: The request of the task running in this process (children run one task at a time).
_current: list[tuple[Task, Request]] = []


def current_request() -> Request | None:
    return _current[-1][1] if _current else None
