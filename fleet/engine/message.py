"""The one message format: a task request is a JSON object, versioned. Never pickle.

Version 1 (the only one so far)::

    {
      "v": 1,                         # format version; a node refuses versions it doesn't know
      "id": "7c6e...",                # task id (also the result key)
      "task": "proj.tasks.add",       # registered task name
      "args": [2, 2],                 # JSON array
      "kwargs": {},                   # JSON object
      "queue": "default",             # the queue it was routed to
      "priority": 0,                  # 0-9, higher runs first
      "eta": null,                    # epoch seconds (UTC) before which it must not run
      "expires": null,                # epoch seconds after which it is revoked unrun
      "retries": 0,                   # attempts already made (task.request.retries)
      "root_id": "7c6e...",           # first task of the workflow
      "parent_id": null,              # the task that sent this one
      "group_id": null,               # the group it belongs to, if any
      "headers": {},                  # user headers (apply_async(headers=...))
      "options": {},                  # per-call task options: acks_late, ignore_result,
                                      #   time_limit, soft_time_limit, track_started
      "callbacks": {},                # workflow data, all optional (see below)
      "sent_at": 1732300000.123,      # epoch seconds
      "origin": "host:1234"           # who sent it
    }

`callbacks` carries the rest of a workflow as signature dicts (`fleet.engine.canvas`
`Signature.to_dict`: {"kind": "signature", "task", "args", "kwargs", "options", "immutable"},
or kind "chain" / "group" with "tasks", or "chord" with "header" and "body")::

    "link": [sig, ...]         # on success: each called with the result prepended
    "link_error": [sig, ...]   # on failure: each called as errback(task_id, error, *args)
    "chain": [sig, ...]        # on success: the first gets the result prepended and
                               #   carries the others as its own "chain"
    "chord": {"group": "...",  # this task is a chord header member: the group's id,
              "size": 10,      #   its number of tasks,
              "body": sig}     #   and the body to send once all of them succeeded

Whoever finishes the task sends these (see `fleet.engine.workflow`).

Only `v`, `id`, `task`, `args` and `kwargs` are required; everything else has the default
shown. Unknown keys are ignored, so later minor additions stay readable by older nodes.

Arguments are plain JSON: tuples arrive as lists, and anything JSON cannot represent (sets,
datetimes, objects) is refused in the caller with `EncodeError`, never discovered in a node.
"""

from __future__ import annotations

import json
import os
import socket
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from fleet.exceptions import EncodeError, MessageDecodeError

VERSION = 1

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_DECODE = json.JSONDecoder().decode
_ORIGIN: str | None = None


def new_id() -> str:
    return uuid.uuid4().hex


def origin() -> str:
    global _ORIGIN
    if _ORIGIN is None or not _ORIGIN.endswith(f":{os.getpid()}"):
        _ORIGIN = f"{socket.gethostname()}:{os.getpid()}"
    return _ORIGIN


def dumps(value: Any) -> str:
    """JSON-encode compactly; raise `EncodeError` naming the offending type."""
    try:
        return _ENCODER.encode(value)
    except (TypeError, ValueError) as exc:
        raise EncodeError(
            f"cannot encode {_short(value)} as JSON ({exc})",
            "fleet messages are JSON: pass numbers, strings, booleans, None, lists and dicts "
            "with string keys (convert datetimes to ISO strings, sets to lists)",
        ) from None


def loads(text: str | bytes) -> Any:
    return _DECODE(text.decode() if isinstance(text, bytes) else text)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


@dataclass(slots=True)
class TaskMessage:
    """A decoded task request (the fields of the format above)."""

    id: str
    task: str
    args: list
    kwargs: dict
    queue: str = "default"
    priority: int = 0
    eta: float | None = None
    expires: float | None = None
    retries: int = 0
    root_id: str | None = None
    parent_id: str | None = None
    group_id: str | None = None
    headers: dict = field(default_factory=dict)
    options: dict = field(default_factory=dict)
    callbacks: dict = field(default_factory=dict)
    sent_at: float = 0.0
    origin: str = ""

    def to_dict(self) -> dict:
        return {
            "v": VERSION,
            "id": self.id,
            "task": self.task,
            "args": self.args,
            "kwargs": self.kwargs,
            "queue": self.queue,
            "priority": self.priority,
            "eta": self.eta,
            "expires": self.expires,
            "retries": self.retries,
            "root_id": self.root_id,
            "parent_id": self.parent_id,
            "group_id": self.group_id,
            "headers": self.headers,
            "options": self.options,
            "callbacks": self.callbacks,
            "sent_at": self.sent_at,
            "origin": self.origin,
        }

    def encode(self) -> str:
        try:
            return _ENCODER.encode(self.to_dict())
        except (TypeError, ValueError) as exc:
            raise EncodeError(
                f"arguments of task {self.task} cannot be encoded as JSON ({exc}): "
                f"args={_short(self.args)} kwargs={_short(self.kwargs)}",
                "pass numbers, strings, booleans, None, lists and dicts with string keys "
                "(convert datetimes to ISO strings, sets to lists, objects to their ids)",
            ) from None


def build(task: str, args: Any = None, kwargs: Any = None, **fields: Any) -> TaskMessage:
    """Make a new message with defaults filled in (id, root_id, sent_at, origin)."""
    message_id = fields.pop("id", None) or new_id()
    if args is None:
        args = []
    elif isinstance(args, tuple):
        args = list(args)
    elif not isinstance(args, list):
        raise EncodeError(f"args of task {task} must be a list or tuple, not "
                          f"{type(args).__name__}", "e.g. add.apply_async((2, 2))")
    if kwargs is None:
        kwargs = {}
    elif not isinstance(kwargs, dict):
        raise EncodeError(f"kwargs of task {task} must be a dict, not {type(kwargs).__name__}",
                          "e.g. add.apply_async(kwargs={'x': 2})")
    fields.setdefault("root_id", message_id)
    fields.setdefault("sent_at", time.time())
    fields.setdefault("origin", origin())
    return TaskMessage(id=message_id, task=task, args=args, kwargs=kwargs, **fields)


_OPTIONAL = {
    "queue": (str,),
    "priority": (int,),
    "eta": (int, float, type(None)),
    "expires": (int, float, type(None)),
    "retries": (int,),
    "root_id": (str, type(None)),
    "parent_id": (str, type(None)),
    "group_id": (str, type(None)),
    "headers": (dict,),
    "options": (dict,),
    "callbacks": (dict,),
    "sent_at": (int, float),
    "origin": (str,),
}


def decode(body: str | bytes) -> TaskMessage:
    """Parse a message body; raise `MessageDecodeError` saying exactly what is wrong."""
    try:
        data = loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MessageDecodeError(f"body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise MessageDecodeError(f"body is a JSON {type(data).__name__}, not an object")
    version = data.get("v")
    if version != VERSION:
        raise MessageDecodeError(
            f"unsupported message version {version!r} (this node reads version {VERSION})",
            "upgrade the nodes, or check what sends to this queue",
        )
    missing = [key for key in ("id", "task", "args", "kwargs") if key not in data]
    if missing:
        raise MessageDecodeError(f"missing field(s) {', '.join(missing)}")
    _check_type(data, "id", (str,))
    _check_type(data, "task", (str,))
    _check_type(data, "args", (list,))
    _check_type(data, "kwargs", (dict,))
    fields = {}
    for key, types in _OPTIONAL.items():
        if key not in data or (data[key] is None and type(None) not in types):
            continue  # absent, or null where null means "the default"
        _check_type(data, key, types)
        fields[key] = data[key]
    return TaskMessage(id=data["id"], task=data["task"], args=data["args"],
                       kwargs=data["kwargs"], **fields)


def _check_type(data: dict, key: str, types: tuple) -> None:
    value = data[key]
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
        raise MessageDecodeError(f"field {key!r} is {_short(value, 40)}, expected {names}")
