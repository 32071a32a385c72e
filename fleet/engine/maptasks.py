"""The built-in map and starmap tasks behind `task.map`, `task.starmap` and `task.chunks`.

`add.map([1, 2])` is one task message (`fleet.map`) that calls `add` on every item in the
node's child, returning the list of results; `chunks` is a group of such starmaps. The app
finds these tasks by name (`fleet.engine.app.TaskRegistry`) without listing them.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from fleet.engine.canvas import Group, Signature

if TYPE_CHECKING:
    from fleet.engine.app import Fleet

MAP_TASK = "fleet.map"
STARMAP_TASK = "fleet.starmap"


def task_map(task: Any, items: Iterable) -> Signature:
    """One task that calls `task(item)` for every item, returning the list of results."""
    return Signature(MAP_TASK, (task.name, [_item(i) for i in items]), app=task.app)


def task_starmap(task: Any, items: Iterable) -> Signature:
    """One task that calls `task(*item)` for every item, returning the list of results."""
    return Signature(STARMAP_TASK, (task.name, [list(_item(i)) for i in items]), app=task.app)


def chunks(task: Any, items: Iterable, n: int) -> Group:
    """A group of starmaps over `n` items each: `GroupResult.get()` is a list of lists."""
    if int(n) < 1:
        raise ValueError(f"chunks: the chunk size must be at least 1, not {n!r}")
    iterator = iter(items)
    parts = iter(lambda: list(itertools.islice(iterator, int(n))), [])
    return Group([task_starmap(task, part) for part in parts], app=task.app)


def _item(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def run_map(app: Fleet, name: str, items: list, star: bool) -> list:
    """The body of the built-in map/starmap tasks (run in a node's child)."""
    task = app.get_task(name)
    return [task(*item) if star else task(item) for item in items]
