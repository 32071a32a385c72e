"""Routing: which queue a task message goes to.

Order of precedence, first match wins:
  1. the call's own `queue=` (apply_async, send_task, signatures);
  2. the task's own `queue` (`@app.task(queue=...)`);
  3. `task_routes`: exact task names first, then glob patterns in the order given
     (`{"proj.tasks.resize_*": "images"}`); a list of such mappings (and callables
     `(name) -> queue | None`) is tried in order;
  4. `task_default_queue` (default: "default").
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleet.engine.app import Fleet
    from fleet.engine.task import Task


def route(app: Fleet, name: str, queue: str | None = None, task: Task | None = None) -> str:
    if queue:
        return queue
    if task is not None and task.queue:
        return task.queue
    routed = route_from_table(app.conf.task_routes, name)
    return routed or app.conf.task_default_queue


def route_from_table(routes: Any, name: str) -> str | None:
    if not routes:
        return None
    for router in routes if isinstance(routes, list | tuple) else [routes]:
        found = router(name) if callable(router) else _match(router, name)
        if found:
            return found if isinstance(found, str) else found.get("queue")
    return None


def _match(table: Mapping[str, Any], name: str) -> Any:
    if name in table:
        return table[name]
    for pattern, target in table.items():
        if any(ch in pattern for ch in "*?[") and fnmatch.fnmatchcase(name, pattern):
            return target
    return None
