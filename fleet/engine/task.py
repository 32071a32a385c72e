"""Tasks: `@app.task`, its options, calling (`delay`, `apply_async`) and retrying.

Calling a task object directly (`add(2, 2)`) runs the function here and now, no message.
`delay`/`apply_async` encode a JSON message (refusing what JSON cannot carry, in the caller),
route it to a queue and put it on the broker (`fleet.engine.sending`). The request of the
running task lives in `fleet.engine.request`.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from fleet.engine import canvas, maptasks
from fleet.engine.ratelimit import parse_rate
from fleet.engine.request import Request, _current, current_request
from fleet.engine.sending import CALL_OPTIONS, build_message, epoch, refuse_unknown, send
from fleet.exceptions import MaxRetriesExceededError, Retry

if TYPE_CHECKING:
    from fleet.engine.app import Fleet
    from fleet.engine.results import AsyncResult

#: Names that moved to `fleet.engine.request` and `fleet.engine.sending`, still importable
#: from here.
__all__ = ["CALL_OPTIONS", "TASK_OPTIONS", "Request", "Task", "build_message",
           "current_request", "refuse_unknown", "send"]

#: Options a task accepts in `@app.task(...)`.
TASK_OPTIONS = frozenset({
    "name", "bind", "ignore_result", "queue", "acks_late", "track_started", "max_retries",
    "default_retry_delay", "rate_limit", "time_limit", "soft_time_limit", "autoretry_for",
    "retry_backoff", "retry_backoff_max", "retry_jitter", "priority", "reject_on_worker_lost",
})


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET = _Unset()


#: Options whose value falls back to an app setting when unset (properties below).
_SETTING_OPTIONS = ("ignore_result", "acks_late", "track_started", "reject_on_worker_lost",
                    "max_retries", "default_retry_delay")


class Task:
    """A registered task. Created by `@app.task`; options as keyword arguments.

    Subclass it for a task class of your own (`@app.task(base=MyTask)`, or an app's
    `task_cls`): options may be class attributes there (`acks_late = True`, `max_retries =
    5`, ...; a decorator's options still win), and the handlers below run where the task
    runs, in Celery's order (see `fleet.engine.lifecycle`).
    """

    def __init__(self, app: Fleet, fun: Callable, **options: Any):
        refuse_unknown(options, TASK_OPTIONS, "unknown task option")
        defaults = _class_options(type(self))
        if defaults:
            options = {**defaults, **options}
            for name in _SETTING_OPTIONS:  # a subclass's value hides the property: keep it
                if name in defaults:
                    object.__setattr__(self, name, options[name])
        self.app = app
        self.fun = fun
        self.name: str = options.get("name") or _default_name(app, fun)
        self.bind: bool = options.get("bind", False)
        self.queue: str | None = options.get("queue")
        self.priority: int | None = options.get("priority")
        self._ignore_result = options.get("ignore_result")
        self._acks_late = options.get("acks_late")
        self._track_started = options.get("track_started")
        self._reject_on_worker_lost = options.get("reject_on_worker_lost")
        self._max_retries = options.get("max_retries", _UNSET)
        self._default_retry_delay = options.get("default_retry_delay")
        self.rate_limit: str | None = options.get("rate_limit")
        self.time_limit: float | None = options.get("time_limit")
        self.soft_time_limit: float | None = options.get("soft_time_limit")
        self.autoretry_for: tuple = tuple(options.get("autoretry_for") or ())
        self.retry_backoff: bool | float = options.get("retry_backoff", False)
        self.retry_backoff_max: float = options.get("retry_backoff_max", 600.0)
        self.retry_jitter: bool = options.get("retry_jitter", True)
        if self.rate_limit is not None:
            parse_rate(self.rate_limit)  # refuse a bad rate at decoration time
        self.__doc__ = fun.__doc__
        self.__name__ = getattr(fun, "__name__", self.name)
        self.__module__ = getattr(fun, "__module__", None)
        self.__wrapped__ = fun

    def __repr__(self) -> str:
        return f"<task {self.name}>"

    # -- options that fall back to app settings (read at use, so conf changes apply) -------

    @property
    def ignore_result(self) -> bool:
        return self._pick(self._ignore_result, "task_ignore_result")

    @property
    def acks_late(self) -> bool:
        return self._pick(self._acks_late, "task_acks_late")

    @property
    def track_started(self) -> bool:
        return self._pick(self._track_started, "task_track_started")

    @property
    def reject_on_worker_lost(self) -> bool:
        """With acks_late: requeue (rather than fail) the task when its process dies."""
        return self._pick(self._reject_on_worker_lost, "task_reject_on_worker_lost")

    @property
    def max_retries(self) -> int | None:
        if self._max_retries is _UNSET:
            return self.app.conf.task_max_retries
        return self._max_retries

    @property
    def default_retry_delay(self) -> float:
        return self._pick(self._default_retry_delay, "task_default_retry_delay")

    def _pick(self, own: Any, setting: str) -> Any:
        return self.app.conf[setting] if own is None else own

    # -- handlers: override them in a Task subclass (they run where the task runs) ---------

    def before_start(self, task_id: str, args: list, kwargs: dict) -> None:
        """Called just before the task runs."""

    def on_success(self, retval: Any, task_id: str, args: list, kwargs: dict) -> None:
        """Called when the task returned `retval`."""

    def on_failure(self, exc: BaseException, task_id: str, args: list, kwargs: dict,
                   einfo: Any) -> None:
        """Called when the task failed with `exc` (`einfo.traceback` is the text)."""

    def on_retry(self, exc: BaseException, task_id: str, args: list, kwargs: dict,
                 einfo: Any) -> None:
        """Called when the task will be retried because of `exc`."""

    def after_return(self, status: str, retval: Any, task_id: str, args: list, kwargs: dict,
                     einfo: Any) -> None:
        """Called after the task ran, whatever happened (`status` is its state)."""

    # -- results ----------------------------------------------------------------------------

    @property
    def backend(self) -> Any:
        """Where this task's results are stored (the app's result backend)."""
        return self.app.backend

    def AsyncResult(self, task_id: str) -> AsyncResult:
        """The result handle of one call of this task."""
        return self.app.AsyncResult(task_id)

    def update_state(self, task_id: str | None = None, state: str | None = None,
                     meta: Any = None, **kwargs: Any) -> None:
        """Store a state of this call (or of `task_id`) now, e.g. progress::

            self.update_state(state="PROGRESS", meta={"done": 30, "total": 100})

        `AsyncResult(id).state` is then "PROGRESS" and `.info` the meta (JSON), and a
        `task-updated` event carries both while the node sends task events. The outcome
        states (SUCCESS, FAILURE, REVOKED) are the node's to store.
        """
        from fleet.engine.results import update_state

        refuse_unknown(kwargs, frozenset(), "update_state got an unknown argument")
        update_state(self, self.request, task_id, state, meta)

    # -- running ----------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task here and now (no message, no worker)."""
        if _current and _current[-1][0] is self:
            return self.run(*args, **kwargs)
        request = Request(task=self.name, args=list(args), kwargs=kwargs, is_eager=True)
        _current.append((self, request))
        try:
            return self.run(*args, **kwargs)
        finally:
            _current.pop()

    def run(self, *args: Any, **kwargs: Any) -> Any:
        if self.bind:
            return self.fun(self, *args, **kwargs)
        return self.fun(*args, **kwargs)

    @property
    def request(self) -> Request:
        """The current call's request (an empty one outside a task)."""
        for task, request in reversed(_current):
            if task is self:
                return request
        return Request(task=self.name)

    # -- sending ----------------------------------------------------------------------------

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """Send the task with these arguments: `add.delay(2, 2)`."""
        return self.apply_async(args, kwargs)

    def apply_async(self, args: Any = None, kwargs: Any = None, **options: Any) -> AsyncResult:
        """Send the task. Options: queue, countdown, eta, expires, task_id, priority, headers,
        ignore_result, acks_late, time_limit, soft_time_limit, link, link_error."""
        return send(self.app, self.name, args, kwargs, options, task=self)

    # -- signatures (fleet.engine.canvas) -----------------------------------------------------

    def s(self, *args: Any, **kwargs: Any) -> Any:
        """A signature of this task: `add.s(2)`, completed later (`add.s(2).delay(3)`)."""
        return canvas.Signature(self, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Any:
        """An immutable signature: it ignores a parent's result (and partial arguments)."""
        return canvas.Signature(self, args, kwargs, immutable=True)

    def signature(self, args: Any = (), kwargs: Any = None, **options: Any) -> Any:
        """A signature with call options: `add.signature((2, 2), countdown=10)`."""
        return canvas.signature(self, args or (), kwargs, **options)

    subtask = signature

    def map(self, items: Any) -> Any:
        """One task calling this one on every item: `add1.map([1, 2]).delay()`."""
        return maptasks.task_map(self, items)

    def starmap(self, items: Any) -> Any:
        """One task calling this one with each item's arguments: `add.starmap([(1, 2)])`."""
        return maptasks.task_starmap(self, items)

    def chunks(self, items: Any, n: int) -> Any:
        """A group of starmaps over `n` items each."""
        return maptasks.chunks(self, items, n)

    def retry(self, args: Any = None, kwargs: Any = None, exc: BaseException | None = None,
              countdown: float | None = None, eta: Any = None,
              max_retries: Any = _UNSET, **options: Any) -> Retry:
        """Ask for this task to run again later; use as `raise self.retry(exc=exc)`.

        Raises `exc` (or `MaxRetriesExceededError`) instead when the retries are used up.
        `eta` is a datetime (naive: in the `timezone` setting) or epoch seconds.
        """
        request = self.request
        limit = self.max_retries if max_retries is _UNSET else max_retries
        if limit is not None and request.retries >= limit:
            if exc is not None:
                raise exc
            raise MaxRetriesExceededError(
                f"task {self.name}[{request.id}] exceeded its {limit} retries",
                "pass exc= to self.retry() to fail with the original exception instead")
        if request.is_eager:
            raise exc or Retry("cannot retry a task that was called directly")
        if eta is None and countdown is None:
            countdown = self.default_retry_delay
        when = epoch(eta, self.app) if eta is not None else \
            time.time() + float(countdown or 0)
        signal = Retry(exc=exc, when=when)
        signal.args_override = args  # type: ignore[attr-defined]
        signal.kwargs_override = kwargs  # type: ignore[attr-defined]
        signal.options = options  # type: ignore[attr-defined]
        raise signal

    def backoff_delay(self, retries: int) -> float:
        """Countdown for automatic retries (`autoretry_for`) with exponential backoff."""
        if not self.retry_backoff:
            return self.default_retry_delay
        factor = 1.0 if self.retry_backoff is True else float(self.retry_backoff)
        delay = min(self.retry_backoff_max, factor * (2 ** retries))
        return random.uniform(0, delay) if self.retry_jitter else delay


def _class_options(cls: type) -> dict[str, Any]:
    """Task options a subclass of Task sets as plain class attributes."""
    found: dict[str, Any] = {}
    for klass in cls.__mro__:
        if klass is Task:
            break
        for name in TASK_OPTIONS - {"name"}:
            value = klass.__dict__.get(name, _UNSET)
            if value is not _UNSET and name not in found and \
                    not isinstance(value, property | staticmethod | classmethod) and \
                    not callable(value):
                found[name] = value
    return found


def _default_name(app: Fleet, fun: Callable) -> str:
    module = getattr(fun, "__module__", None) or "__main__"
    if module == "__main__" and app.main:
        module = app.main
    return f"{module}.{fun.__name__}"


