"""What runs around a task where it runs (a pool child): the task class's handlers and the
task hooks, in Celery's order.

    before_start, hooks.task_prerun
    the task
    on_success + hooks.task_success | on_retry + hooks.task_retry |
        on_failure + hooks.task_failure   (nothing more for a terminated task)
    after_return, hooks.task_postrun

`fleet.engine.execute` calls `prerun` and `finished`, one line each. Both return at once
when the task's class overrides no handler and no hook has receivers (the per-task cost is
two calls). A handler that raises is logged and changes nothing: the outcome is already
decided. Results are stored by the node after this, so within these handlers a task's
`AsyncResult` does not show its outcome yet.
"""

from __future__ import annotations

import logging
import traceback as tb
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from fleet.engine import hooks, states
from fleet.engine.task import Task

if TYPE_CHECKING:
    from types import TracebackType

    from fleet.engine.request import Request

log = logging.getLogger("fleet.execute")

_HANDLERS = ("before_start", "on_success", "on_failure", "on_retry", "after_return")


@dataclass
class ExceptionInfo:
    """A failure as handlers and hooks get it (`einfo`), with Celery's attribute names."""

    exception: BaseException
    type: type[BaseException]
    tb: TracebackType | None
    traceback: str  #: the formatted traceback

    @classmethod
    def of(cls, exc: BaseException) -> ExceptionInfo:
        text = "".join(tb.format_exception(type(exc), exc, exc.__traceback__))
        return cls(exc, type(exc), exc.__traceback__, text)


def _overrides(task: Task) -> bool:
    cls = type(task)
    return cls is not Task and any(getattr(cls, name) is not getattr(Task, name)
                                   for name in _HANDLERS)


def prerun(task: Task, request: Request) -> None:
    """Before the task runs: `before_start`, then the task_prerun hook."""
    custom = _overrides(task)
    if not (custom or hooks.task_prerun.receivers):
        return
    if custom:
        _call(task.before_start, request.id, request.args, request.kwargs)
    if hooks.task_prerun.receivers:
        hooks.task_prerun.send(sender=task, task_id=request.id, task=task, args=request.args,
                               kwargs=request.kwargs)


def finished(task: Task, request: Request, state: str, value: Any) -> None:
    """After the task ran to `state` (`value`: its return value, or the exception for
    RETRY and FAILURE): the handlers and hooks of that outcome, then after_return and
    task_postrun. A task stopped by `terminate` (REVOKED) gets only the last two; its
    task_revoked hook runs in the node."""
    custom = _overrides(task)
    if not (custom or hooks.task_postrun.receivers or hooks.task_success.receivers or
            hooks.task_failure.receivers or hooks.task_retry.receivers):
        return
    einfo = ExceptionInfo.of(value) if isinstance(value, BaseException) else None
    if state == states.SUCCESS:
        _succeeded(task, request, value, custom)
    elif state == states.RETRY and einfo is not None:
        _retrying(task, request, einfo, custom)
    elif state == states.FAILURE and einfo is not None:
        _failed(task, request, einfo, custom)
    if custom:
        _call(task.after_return, state, value, request.id, request.args, request.kwargs,
              einfo)
    if hooks.task_postrun.receivers:
        hooks.task_postrun.send(sender=task, task_id=request.id, task=task, args=request.args,
                                kwargs=request.kwargs, retval=value, state=state)


def _succeeded(task: Task, request: Request, value: Any, custom: bool) -> None:
    if custom:
        _call(task.on_success, value, request.id, request.args, request.kwargs)
    if hooks.task_success.receivers:
        hooks.task_success.send(sender=task, result=value)


def _retrying(task: Task, request: Request, einfo: ExceptionInfo, custom: bool) -> None:
    reason = getattr(einfo.exception, "exc", None) or einfo.exception
    if custom:
        _call(task.on_retry, reason, request.id, request.args, request.kwargs, einfo)
    if hooks.task_retry.receivers:
        hooks.task_retry.send(sender=task, request=request, reason=reason, einfo=einfo)


def _failed(task: Task, request: Request, einfo: ExceptionInfo, custom: bool) -> None:
    exc = einfo.exception
    if custom:
        _call(task.on_failure, exc, request.id, request.args, request.kwargs, einfo)
    if hooks.task_failure.receivers:
        hooks.task_failure.send(sender=task, task_id=request.id, exception=exc,
                                args=request.args, kwargs=request.kwargs, traceback=einfo.tb,
                                einfo=einfo)


def _call(handler: Any, *args: Any) -> None:
    try:
        handler(*args)
    except Exception:
        log.exception("%s of task %s failed (ignored)", handler.__name__,
                      getattr(handler.__self__, "name", "?"))
