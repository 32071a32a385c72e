"""Sending a task: a call (name, arguments, call options) becomes a message on the broker.

`build_message` checks the call options (a misspelt one is an error naming the closest),
turns countdown/eta/expires into epoch seconds, routes the task to its queue, and makes the
task running in this process (if any) the new message's parent. `send` encodes the message,
puts it, and returns its `AsyncResult`. Tasks (`delay`, `apply_async`), signatures and
`app.send_task` all send through here.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from fleet.engine import hooks
from fleet.engine import message as messages
from fleet.engine.request import current_request
from fleet.engine.results import AsyncResult
from fleet.engine.routing import route
from fleet.engine.transport.base import Outgoing, clamp_priority
from fleet.operator_errors import ConfigError, closest

if TYPE_CHECKING:
    from fleet.engine.app import Fleet
    from fleet.engine.task import Task


#: Options `apply_async` accepts.
CALL_OPTIONS = frozenset({
    "queue", "countdown", "eta", "expires", "task_id", "priority", "headers", "ignore_result",
    "acks_late", "time_limit", "soft_time_limit", "track_started", "link", "link_error",
    "retries", "parent_id", "root_id", "group_id", "callbacks", "shadow",
})


def refuse_unknown(given: dict, valid: frozenset[str], what: str) -> None:
    """A misspelt option is a TypeError naming the closest valid one, never ignored."""
    unknown = set(given) - valid
    if unknown:
        name = sorted(unknown)[0]
        hint = closest(name, valid)
        raise TypeError(f"{what} {name!r}" + (f"; did you mean {hint!r}?" if hint else ""))


def epoch(value: Any, app: Fleet | None = None) -> float:
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
        eta = epoch(options["eta"], app)
    expires = options.get("expires")
    if expires is not None:
        expires = epoch(expires, app) if isinstance(expires, datetime | timedelta) \
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
    keys = ("ignore_result", "acks_late", "time_limit", "soft_time_limit", "track_started",
            "shadow")
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
    msg = build_message(app, name, args, kwargs, options, task)
    if hooks.before_task_publish.receivers:
        announce(hooks.before_task_publish, [msg])
    body = msg.encode()
    app.broker.put([Outgoing(msg.id, msg.queue, body, msg.priority, msg.eta)])
    if hooks.after_task_publish.receivers:
        announce(hooks.after_task_publish, [msg])
    if app.conf.task_send_sent_event:
        from fleet.engine.events import send_task_sent

        send_task_sent(app, msg)
    return AsyncResult(msg.id, app=app)


def announce(hook: hooks.Hook, msgs: list[messages.TaskMessage]) -> None:
    """Send a publish hook for each message: `body` is the message as a dict (`body["id"]`,
    `body["task"]`, ...); `headers` are its user headers, which a before_task_publish
    receiver may change (they are what is sent)."""
    for msg in msgs:
        hook.send(sender=msg.task, body=msg.to_dict(), exchange="", routing_key=msg.queue,
                  headers=msg.headers, properties={"priority": msg.priority, "eta": msg.eta})
