"""Tasks: `@app.task`, calling (`delay`, `apply_async`), retrying, and the running request.

Calling a task object directly (`add(2, 2)`) runs the function here and now, no message.
`delay`/`apply_async` encode a JSON message (refusing what JSON cannot carry, in the caller),
route it to a queue and put it on the broker.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fleet.engine import message as messages
from fleet.engine.routing import route
from fleet.engine.transport.base import Outgoing, clamp_priority
from fleet.exceptions import Retry

if TYPE_CHECKING:
    from fleet.engine.app import Fleet
    from fleet.engine.results import AsyncResult

#: Options a task accepts in `@app.task(...)`.
TASK_OPTIONS = frozenset({
    "name", "bind", "ignore_result", "queue", "acks_late", "track_started", "max_retries",
    "default_retry_delay", "rate_limit", "time_limit", "soft_time_limit", "autoretry_for",
    "retry_backoff", "retry_backoff_max", "retry_jitter", "priority", "reject_on_worker_lost",
})

#: Options `apply_async` accepts.
CALL_OPTIONS = frozenset({
    "queue", "countdown", "eta", "expires", "task_id", "priority", "headers", "ignore_result",
    "acks_late", "time_limit", "soft_time_limit", "track_started", "link", "link_error",
    "retries", "parent_id", "root_id", "group_id", "callbacks",
})


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


class _Unset:
    def __repr__(self) -> str:
        return "<unset>"


_UNSET = _Unset()


#: The request of the task running in this process (children run one task at a time).
_current: list[tuple[Task, Request]] = []


def refuse_unknown(given: dict, valid: frozenset[str], what: str) -> None:
    """A misspelt option is a TypeError naming the closest valid one, never ignored."""
    unknown = set(given) - valid
    if unknown:
        from fleet.operator_errors import closest

        name = sorted(unknown)[0]
        hint = closest(name, valid)
        raise TypeError(f"{what} {name!r}" + (f"; did you mean {hint!r}?" if hint else ""))


def current_request() -> Request | None:
    return _current[-1][1] if _current else None


class Task:
    """A registered task. Created by `@app.task`; options as keyword arguments."""

    def __init__(self, app: Fleet, fun: Callable, **options: Any):
        refuse_unknown(options, TASK_OPTIONS, "unknown task option")
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
            from fleet.engine.ratelimit import parse_rate

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
        from fleet.engine.canvas import Signature

        return Signature(self, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Any:
        """An immutable signature: it ignores a parent's result (and partial arguments)."""
        from fleet.engine.canvas import Signature

        return Signature(self, args, kwargs, immutable=True)

    def signature(self, args: Any = (), kwargs: Any = None, **options: Any) -> Any:
        """A signature with call options: `add.signature((2, 2), countdown=10)`."""
        from fleet.engine.canvas import signature

        return signature(self, args or (), kwargs, **options)

    subtask = signature

    def map(self, items: Any) -> Any:
        """One task calling this one on every item: `add1.map([1, 2]).delay()`."""
        from fleet.engine.canvas import task_map

        return task_map(self, items)

    def starmap(self, items: Any) -> Any:
        """One task calling this one with each item's arguments: `add.starmap([(1, 2)])`."""
        from fleet.engine.canvas import task_starmap

        return task_starmap(self, items)

    def chunks(self, items: Any, n: int) -> Any:
        """A group of starmaps over `n` items each."""
        from fleet.engine.canvas import chunks

        return chunks(self, items, n)

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
            from fleet.exceptions import MaxRetriesExceededError

            raise MaxRetriesExceededError(
                f"task {self.name}[{request.id}] exceeded its {limit} retries",
                "pass exc= to self.retry() to fail with the original exception instead")
        if request.is_eager:
            raise exc or Retry("cannot retry a task that was called directly")
        if eta is None and countdown is None:
            countdown = self.default_retry_delay
        when = _timestamp(eta, self.app) if eta is not None else \
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


def _default_name(app: Fleet, fun: Callable) -> str:
    module = getattr(fun, "__module__", None) or "__main__"
    if module == "__main__" and app.main:
        module = app.main
    return f"{module}.{fun.__name__}"


def _timestamp(value: Any, app: Fleet | None = None) -> float:
    """An eta/expires option as epoch seconds (UTC): a datetime (naive ones are taken in the
    app's `timezone` setting, UTC by default), a timedelta from now, or a number."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_zone(app.conf.timezone if app else "UTC"))
        return value.timestamp()
    if isinstance(value, timedelta):
        return time.time() + value.total_seconds()
    return float(value)


def _zone(name: str) -> Any:
    """The tzinfo for an IANA name ('UTC', 'Europe/Paris'); a clear error if unknown."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if name.upper() == "UTC":
        return UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        from fleet.operator_errors import ConfigError

        raise ConfigError(f"timezone = {name!r} is not a known time zone",
                          "use an IANA name such as 'UTC' or 'Europe/Paris'") from None


def build_message(app: Fleet, name: str, args: Any, kwargs: Any, options: dict,
                  task: Task | None = None) -> messages.TaskMessage:
    """Turn a call into a message (routing, eta, expiry, parentage); raises on bad input."""
    if not options:  # the common `delay()`: nothing to look at but routing and parentage
        return _plain_message(app, name, args, kwargs, task)
    refuse_unknown(options, CALL_OPTIONS, "apply_async got an unknown option")
    now = time.time()
    eta = None
    if options.get("countdown") is not None:
        eta = now + float(options["countdown"])
    elif options.get("eta") is not None:
        eta = _timestamp(options["eta"], app)
    expires = options.get("expires")
    if expires is not None:
        expires = _timestamp(expires, app) if isinstance(expires, datetime | timedelta) \
            else now + float(expires)
    priority = options.get("priority")
    if priority is None:
        priority = task.priority if task and task.priority is not None else \
            app.conf.task_default_priority
    parent = current_request()
    parent_id = options.get("parent_id") or (parent.id if parent and not parent.is_eager
                                              else None)
    root_id = options.get("root_id") or (parent.root_id if parent and parent_id else None)
    fields: dict[str, Any] = {
        "queue": route(app, name, options.get("queue"), task),
        "priority": clamp_priority(priority),
        "eta": eta,
        "expires": expires,
        "retries": int(options.get("retries") or 0),
        "parent_id": parent_id,
        "group_id": options.get("group_id"),
        "headers": dict(options.get("headers") or {}),
        "options": _task_options(options),
        "callbacks": dict(options.get("callbacks") or {}),
    }
    if root_id:
        fields["root_id"] = root_id
    if options.get("task_id"):
        fields["id"] = str(options["task_id"])
    for key in ("link", "link_error"):
        if options.get(key) is not None:
            fields["callbacks"][key] = _as_signature_list(options[key])
    return messages.build(name, args, kwargs, **fields)


def _plain_message(app: Fleet, name: str, args: Any, kwargs: Any,
                   task: Task | None) -> messages.TaskMessage:
    """`build_message` without call options: the same message, built with less work (it
    is most of a `delay()`'s own time on the client, beside the round trip)."""
    priority = task.priority if task and task.priority is not None else \
        app.conf.task_default_priority
    fields: dict[str, Any] = {"queue": route(app, name, None, task),
                              "priority": clamp_priority(priority)}
    parent = current_request()
    if parent is not None and not parent.is_eager and parent.id:
        fields["parent_id"] = parent.id
        if parent.root_id:
            fields["root_id"] = parent.root_id
    return messages.build(name, args, kwargs, **fields)


def _task_options(options: dict) -> dict:
    keys = ("ignore_result", "acks_late", "time_limit", "soft_time_limit", "track_started")
    return {key: options[key] for key in keys if options.get(key) is not None}


def _as_signature_list(value: Any) -> list[dict]:
    items = value if isinstance(value, list | tuple) else [value]
    result = []
    for item in items:
        to_dict = getattr(item, "to_dict", None)
        result.append(to_dict() if to_dict is not None else dict(item))
    return result


def send(app: Fleet, name: str, args: Any, kwargs: Any, options: dict,
         task: Task | None = None) -> AsyncResult:
    """Encode, route and put one task message; return its `AsyncResult`."""
    from fleet.engine.results import AsyncResult

    msg = build_message(app, name, args, kwargs, options, task)
    body = msg.encode()
    app.broker.put([Outgoing(msg.id, msg.queue, body, msg.priority, msg.eta)])
    if app.conf.task_send_sent_event:
        from fleet.engine.events import send_task_sent

        send_task_sent(app, msg)
    return AsyncResult(msg.id, app=app)
