"""Hooks at a task's and a node's moments, with Celery's signal names and arguments:
`from fleet import hooks`, then `@hooks.task_prerun.connect` (see `fleet.engine.hooks`,
and the README's "Hooks" for where each one runs).

Celery's `celery.signals` module maps to this one name for name (`task_prerun`,
`task_postrun`, `task_success`, `task_failure`, `task_retry`, `worker_process_init`,
`worker_ready`, ...).
"""

from fleet.engine.hooks import *  # noqa: F403  (the hooks are this module's whole API)
from fleet.engine.hooks import HOOKS, Hook, __all__  # noqa: F401
