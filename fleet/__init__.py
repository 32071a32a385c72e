"""fleet: run fleets of task workers.

The public engine API is re-exported here lazily, so `import fleet` (and `fleet --version`)
stays fast: nothing heavy is imported until a name is used.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "Fleet": "fleet.engine.app",
    "Task": "fleet.engine.task",
    "AsyncResult": "fleet.engine.results",
    "states": "fleet.engine.states",
    "GroupResult": "fleet.engine.results",
    "Signature": "fleet.engine.canvas",
    "signature": "fleet.engine.canvas",
    "subtask": "fleet.engine.canvas",
    "chain": "fleet.engine.canvas",
    "group": "fleet.engine.canvas",
    "chord": "fleet.engine.canvas",
    "crontab": "fleet.engine.schedules",
    "shared_task": "fleet.engine.current",
    "current_app": "fleet.engine.current",
    "hooks": "fleet.hooks",
}

__all__ = ["AsyncResult", "Fleet", "GroupResult", "Signature", "Task", "__version__", "chain",
           "chord", "crontab", "current_app", "group", "hooks", "shared_task", "signature",
           "states", "subtask"]  # = _EXPORTS + version

if TYPE_CHECKING:  # pragma: no cover
    from fleet import hooks
    from fleet.engine import states
    from fleet.engine.app import Fleet
    from fleet.engine.canvas import Signature, chain, chord, group, signature, subtask
    from fleet.engine.current import current_app, shared_task
    from fleet.engine.results import AsyncResult, GroupResult
    from fleet.engine.schedules import crontab
    from fleet.engine.task import Task


def __getattr__(name: str) -> Any:
    module_name = _EXPORTS.get(name)
    if module_name is None:
        raise AttributeError(f"module 'fleet' has no attribute {name!r}")
    module = importlib.import_module(module_name)
    value = module if module_name.endswith("." + name) else getattr(module, name)
    globals()[name] = value
    return value
