"""Task and worker events: what they look like, the client's task-sent event, and listening.

Nodes send them over the broker's "events" broadcast channel (their sender is node side:
`fleet.engine.event_sender`, which says which events a node sends and when); this module is
what a client needs: `send_task_sent` (when `task_send_sent_event` is set), `listen`,
`decode` and `format_event`.

Events are transient: a broadcast (Redis PUBLISH, a SQLite broadcast row dropped after a
minute), never a queue, so a slow or absent listener never slows a node or fills the broker.
A node batches the events of one loop turn into one broadcast (a JSON list of event objects).

An event is a flat JSON object: {"type", "node", "timestamp", ...}; task events add "uuid",
"name" (the `shadow` name when the call gave one) and, depending on the type, "args",
"kwargs", "result", "exception", "runtime". `task-updated` is sent by `update_state` from
where the task runs, with the custom "state" and its meta as "info".
"""

from __future__ import annotations

import contextlib
import json
import logging
import selectors
import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from fleet.engine import states
from fleet.engine.message import MAX_EPOCH, parse_json
from fleet.exceptions import BrokerUnavailable

if TYPE_CHECKING:
    from fleet.engine.app import Fleet

log = logging.getLogger("fleet.events")

EVENTS_CHANNEL = "events"
SETTLED_TYPES = {states.SUCCESS: "task-succeeded", states.FAILURE: "task-failed",
                 states.RETRY: "task-retried", states.REVOKED: "task-revoked"}
#: Longest args/kwargs/result text put in an event (events stay small).
FIELD_LIMIT = 500


def clip(value: Any) -> Any:
    """`value` as it goes in an event: itself, or its JSON text cut at FIELD_LIMIT."""
    text = json.dumps(value, default=repr)
    return value if len(text) <= FIELD_LIMIT else text[:FIELD_LIMIT] + "..."


def send_task_sent(app: Fleet, msg: Any) -> None:
    """The client's task-sent event (when `task_send_sent_event` is set); best effort."""
    event = {"type": "task-sent", "node": None, "timestamp": time.time(), "uuid": msg.id,
             "name": msg.task, "args": clip(msg.args), "kwargs": clip(msg.kwargs),
             "queue": msg.queue, "eta": msg.eta, "expires": msg.expires}
    try:
        app.broker.publish(EVENTS_CHANNEL, json.dumps([event], default=repr))
    except Exception as exc:
        log.warning("could not send the task-sent event of %s: %s", msg.id, exc)


def send_task_updated(app: Fleet, meta: dict, request: Any) -> None:
    """The `task-updated` event of `update_state` (a custom state and its meta), sent from
    where the task runs while its node sends task events; best effort."""
    event = {"type": "task-updated", "node": request.hostname, "timestamp": time.time(),
             "uuid": meta["id"], "name": display_name(request.task, request.options),
             "state": meta["state"], "info": clip(meta["result"])}
    try:
        app.broker.publish(EVENTS_CHANNEL, json.dumps([event], default=repr))
    except Exception as exc:
        log.warning("could not send the task-updated event of %s: %s", meta["id"], exc)


def display_name(task: str | None, options: dict | None) -> str | None:
    """The name a task is shown by in logs and events: `apply_async(shadow=...)`'s, else
    its own."""
    return (options or {}).get("shadow") or task


# == receiving ==================================================================================

def decode(payload: str) -> list[dict[str, Any]]:
    """One broadcast -> its events, each checked (`checked_event`): a malformed broadcast
    yields nothing, a malformed event is left out, a field of the wrong type is dropped, so
    whatever folds events in (`fleet events`, the dashboard) meets only what it expects."""
    try:
        data = parse_json(payload, EVENT_SIZE)
    except ValueError:
        return []
    items = data if isinstance(data, list) else [data]
    return [event for item in items if (event := checked_event(item)) is not None]


#: Largest events broadcast read (a node's turn of events; their fields are clipped).
EVENT_SIZE = 4 * 1024 * 1024
#: The fields of an event with a known type, and the check each value must pass (a value
#: that fails is dropped from the event; other fields pass as they are).
_TEXT_FIELDS = ("uuid", "name", "queue", "hostname", "parent_id", "root_id", "group_id",
                "state", "resent_from", "exception", "reason")
_NUMBER_FIELDS = ("timestamp", "runtime", "eta", "expires", "freq", "started")
_COUNT_FIELDS = ("active", "processed", "concurrency", "pid", "retries")


def checked_event(item: Any) -> dict[str, Any] | None:
    """An event as it may be folded in: a JSON object with a text `type`, `node` text or
    None, and only well-typed values in the fields fleet's events carry; None for an item
    that is no event."""
    if not isinstance(item, dict) or not isinstance(item.get("type"), str):
        return None
    event = dict(item)
    if not isinstance(event.get("node"), str | None):
        event["node"] = None
    for key in _TEXT_FIELDS:
        if key in event and not isinstance(event[key], str):
            del event[key]
    for key in _NUMBER_FIELDS:
        if key in event and not _finite(event[key]):
            del event[key]
    if "timestamp" in event and not 0 <= event["timestamp"] <= MAX_EPOCH:
        del event["timestamp"]
    for key in _COUNT_FIELDS:
        value = event.get(key)
        if key in event and not (isinstance(value, int) and not isinstance(value, bool)
                                 and value >= 0):
            del event[key]
    loadavg = event.get("loadavg")
    if "loadavg" in event and not (isinstance(loadavg, list) and all(map(_finite, loadavg))):
        del event["loadavg"]
    return event


def _finite(value: Any) -> bool:
    """A number an event field may hold (NaN fails the comparison; a huge int is refused
    before anything converts it to a float)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and \
        -1e15 < value < 1e15


def listen(app: Fleet, stop: Callable[[], bool] | None = None, interval: float = 0.1,
           notice: Callable[[str], None] | None = None) -> Iterator[dict[str, Any] | None]:
    """Yield events as they arrive, and None once subscribed and then at least every
    `interval` seconds (so a caller can announce itself, redraw or check for input), until
    `stop()` is true.

    With `notice`, a broker error does not end the stream: `notice(text)` says so, and the
    subscription is opened again with backoff (events sent meanwhile are missed: they are
    transient). Without it, the error propagates.
    """
    errors = (*app.broker.transient_errors, BrokerUnavailable)
    subscription: Any = app.broker.subscribe([EVENTS_CHANNEL])
    delay, retry_at = RESUBSCRIBE_DELAY, 0.0
    try:
        yield None
        while stop is None or not stop():
            if subscription is None and time.monotonic() >= retry_at:
                try:
                    subscription = app.broker.subscribe([EVENTS_CHANNEL])
                    notice(f"listening again on {app.broker.describe()}")
                    delay = RESUBSCRIBE_DELAY
                except errors as exc:
                    retry_at, delay = _trouble(notice, exc, delay)
            if subscription is None:
                time.sleep(interval)
                yield None
                continue
            try:
                broadcasts = _wait(subscription, interval)
            except errors as exc:
                if notice is None:
                    raise
                _close(subscription)
                subscription = None
                retry_at, delay = _trouble(notice, exc, delay)
                continue
            for _, payload in broadcasts:
                yield from decode(payload)
            yield None
    finally:
        _close(subscription)


#: First and longest wait before subscribing again after a broker error (seconds).
RESUBSCRIBE_DELAY, RESUBSCRIBE_MAX_DELAY = 0.5, 5.0


def _wait(subscription: Any, interval: float) -> list[tuple[str, str]]:
    """The broadcasts that arrive within `interval` (sooner if one arrives)."""
    fd = subscription.fileno()
    if fd is None:  # polled transports (SQLite)
        time.sleep(min(interval, 0.02))
    else:
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            selector.select(interval)
    return subscription.poll()[0]


def _trouble(notice: Callable[[str], None], exc: BaseException, delay: float
             ) -> tuple[float, float]:
    notice(f"broker error ({type(exc).__name__}: {' '.join(str(exc).split())}); events are "
           f"missed until it answers again; retrying in {delay:g}s")
    return time.monotonic() + delay, min(delay * 2, RESUBSCRIBE_MAX_DELAY)


def _close(subscription: Any) -> None:
    if subscription is not None:
        with contextlib.suppress(Exception):  # its connection may be broken already
            subscription.close()


def format_event(event: dict[str, Any]) -> str:
    """One line for `fleet events --dump`: time, node, event, task, details."""
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(event.get("timestamp", 0)))
    stamp += f".{int((event.get('timestamp', 0) % 1) * 1000):03d}"
    kind = event.get("type", "?")
    parts = [stamp, event.get("node") or "-", kind]
    if kind.startswith("task-"):
        parts.append(f"{event.get('name') or '?'}[{event.get('uuid')}]")
        for key in ("state", "info", "args", "kwargs", "result", "exception", "reason"):
            if key in event:
                parts.append(f"{key}={json.dumps(event[key], default=repr)}")
        if event.get("runtime") is not None:
            parts.append(f"runtime={float(event['runtime']):.6f}s")
    else:
        for key in ("active", "processed", "loadavg", "state"):
            if key in event:
                parts.append(f"{key}={json.dumps(event[key])}")
    return " ".join(parts)
