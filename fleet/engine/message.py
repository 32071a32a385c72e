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

Everything a node takes from the broker is checked here before anything acts on it
(`decode`): the JSON itself (`parse_json`: a size limit, at most MAX_DEPTH levels of nesting,
finite numbers only, valid UTF-8 text), then each field's type and range (ids, task and queue
names: 1 to 255 printable characters; priority 0-9; eta and expires epoch seconds up to year
9999; retries and counts whole numbers from 0), the per-call options a node reads (flags true
or false, time limits seconds from 0), the redelivery header, and the shape of the workflow
in `callbacks`. A body that fails is a `MessageDecodeError` saying which field and why: the
node moves it to the dead-letter queue with that reason.

Arguments are plain JSON: tuples arrive as lists, and anything JSON cannot represent (sets,
datetimes, objects) is refused in the caller with `EncodeError`, never discovered in a node.
"""

from __future__ import annotations

import json
import math
import os
import re
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from fleet.exceptions import EncodeError, MessageDecodeError

VERSION = 1
#: Header counting how often a task lost with its child was sent back to its queue
#: (reject_on_worker_lost; the node's settler writes and reads it).
REDELIVERY_HEADER = "x-fleet-redeliveries"

_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
_DECODE = json.JSONDecoder().decode
_ORIGIN: str | None = None


#: The version (4) and variant (RFC 4122) bits of a random UUID, and the bits they replace.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_id() -> str:
    """A random UUID (version 4) as 32 hex digits, as `uuid.uuid4().hex` gives, without
    building a UUID object (a noticeable part of a `delay()`)."""
    return "%032x" % (int.from_bytes(os.urandom(16)) & _UUID4_CLEAR | _UUID4_SET)


def _forget_origin() -> None:
    global _ORIGIN
    _ORIGIN = None


os.register_at_fork(after_in_child=_forget_origin)


def origin() -> str:
    """"host:pid" of this process (cached; a forked child computes its own)."""
    global _ORIGIN
    if _ORIGIN is None:
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
    """Decode JSON that fleet itself wrote for itself (a pool child's frames)."""
    return _DECODE(text.decode() if isinstance(text, bytes) else text)


# == reading JSON from outside ====================================================================

#: Largest message body (or other JSON from the broker) fleet decodes, in characters.
MAX_BODY_SIZE = 16 * 1024 * 1024
#: Deepest nesting of arrays and objects fleet decodes (the top level counts as 1): far more
#: than any real message, far less than what would exhaust the stack later on.
MAX_DEPTH = 64
#: Longest id, task name or queue name; longest free text (origin); largest count.
MAX_NAME, MAX_TEXT, MAX_COUNT = 255, 1024, 2**31 - 1
#: Epoch seconds fleet accepts (eta, expires, sent_at): up to the end of year 9999.
MAX_EPOCH = 253402300799.0
#: Longest duration accepted (time limits, countdowns): about 31 years.
MAX_SECONDS = 1e9


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number JSON allows")


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:40]} is out of range")
    return value


_STRICT_DECODE = json.JSONDecoder(parse_constant=_no_constant, parse_float=_finite).decode


def parse_json(text: str | bytes, max_size: int | None = MAX_BODY_SIZE,
               max_depth: int = MAX_DEPTH) -> Any:
    """Decode JSON that came from outside (the broker, a command line): strictly.

    Refused with a ValueError that says why: text over `max_size` characters (None: no
    limit), invalid UTF-8 (bytes, or text carrying undecodable bytes as surrogates), NaN,
    Infinity or numbers too large for a float, numbers too long to read, nesting deeper
    than `max_depth`, and anything that is not JSON. Never raises anything else.
    """
    if not isinstance(text, str | bytes):
        raise ValueError(f"expected text, got {type(text).__name__}")
    if max_size is not None and len(text) > max_size:
        raise ValueError(f"{len(text)} characters, over the limit of {max_size}")
    try:
        if isinstance(text, bytes):
            text = text.decode()
        elif not text.isascii():
            text.encode()  # lone surrogates: bytes that were not UTF-8
        value = _STRICT_DECODE(text)
    except UnicodeError:
        raise ValueError("not valid UTF-8 text") from None
    except RecursionError:
        raise ValueError(f"nested deeper than {max_depth} levels") from None
    except ValueError as exc:  # JSONDecodeError, and int()'s limit on digits
        raise ValueError(" ".join(str(exc).split())[:200]) from None
    escapes = "\\ud" in text or "\\uD" in text
    if escapes or text.count("[") + text.count("{") > max_depth:
        _check_nesting(value, max_depth, escapes)
    return value


def _check_nesting(value: Any, max_depth: int, escapes: bool) -> None:
    """Walk `value` without recursion: no deeper than `max_depth`, and (when the text had
    \\u escapes of surrogates) no string that is not valid Unicode."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = [*item.values(), *item.keys()] if escapes else item.values()
        elif isinstance(item, list):
            children = item
        else:
            if escapes and isinstance(item, str):
                _valid_unicode(item)
            continue
        if depth > max_depth:
            raise ValueError(f"nested deeper than {max_depth} levels")
        stack.extend((child, depth + 1) for child in children)


def _valid_unicode(text: str) -> None:
    try:
        text.encode()
    except UnicodeError:
        raise ValueError("a string holds a lone surrogate (\\ud800-\\udfff)") from None


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


# == decoding: everything a node takes from the broker is checked before anything acts on it ==

def _text_field(limit: int = MAX_NAME, empty: bool = False) -> Callable[[str, Any], Any]:
    def check(key: str, value: Any) -> str:
        if not isinstance(value, str) or (not value and not empty) or len(value) > limit \
                or _CONTROL_CHARS.search(value):
            _refuse(key, value, f"a text of {'0' if empty else '1'} to {limit} printable "
                                "characters")
        return value
    return check


def _optional(check: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    return lambda key, value: None if value is None else check(key, value)


def _whole(low: int, high: int) -> Callable[[str, Any], int]:
    def check(key: str, value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            _refuse(key, value, f"a whole number from {low} to {high}")
        return value
    return check


def _number(low: float, high: float) -> Callable[[str, Any], float]:
    def check(key: str, value: Any) -> float:
        if not isinstance(value, int | float) or isinstance(value, bool) or \
                not low <= value <= high:  # (NaN fails this too)
            _refuse(key, value, f"a number from {low:g} to {high:g}")
        return value
    return check


def _kind(*types: type) -> Callable[[str, Any], Any]:
    names = " or ".join("null" if t is type(None) else _JSON_NAMES.get(t, t.__name__)
                        for t in types)

    def check(key: str, value: Any) -> Any:
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            _refuse(key, value, names)
        return value
    return check


def _refuse(key: str, value: Any, expected: str) -> None:
    raise MessageDecodeError(f"field {key!r} is {_short(value, 40)}, expected {expected}")


_JSON_NAMES = {dict: "object", list: "array", str: "text", bool: "true or false",
               int: "whole number", float: "number"}
#: Control characters (and DEL) never belong in an id, a task or a queue name: they would
#: forge log lines and key names.
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
_NAME = _text_field()
_EPOCH = _number(0, MAX_EPOCH)
_SECONDS = _number(0, MAX_SECONDS)
_FLAG = _optional(_kind(bool))

#: Every field but the required ones, with its check (null means "the default" where the
#: check does not accept it).
_OPTIONAL: dict[str, Callable[[str, Any], Any]] = {
    "queue": _NAME,
    "priority": _whole(0, 9),
    "eta": _optional(_EPOCH),
    "expires": _optional(_EPOCH),
    "retries": _whole(0, MAX_COUNT),
    "root_id": _optional(_NAME),
    "parent_id": _optional(_NAME),
    "group_id": _optional(_NAME),
    "headers": _kind(dict),
    "options": _kind(dict),
    "callbacks": _kind(dict),
    "sent_at": _number(-MAX_EPOCH, MAX_EPOCH),
    "origin": _text_field(MAX_TEXT, empty=True),
}
_NULL_OK = {"eta", "expires", "root_id", "parent_id", "group_id"}

#: The per-call options a node reads (`options`), and what each must be.
_TASK_OPTIONS: dict[str, Callable[[str, Any], Any]] = {
    "acks_late": _FLAG, "ignore_result": _FLAG, "track_started": _FLAG,
    "reject_on_worker_lost": _FLAG, "time_limit": _optional(_SECONDS),
    "soft_time_limit": _optional(_SECONDS),
}
#: Call options a workflow signature may carry, and what each must be (the others are
#: checked when the signature is sent).
_CALL_OPTIONS: dict[str, Callable[[str, Any], Any]] = {
    **_TASK_OPTIONS, "countdown": _optional(_number(-MAX_SECONDS, MAX_SECONDS)),
    "eta": _optional(_EPOCH), "expires": _optional(_number(-MAX_EPOCH, MAX_EPOCH)),
    "priority": _optional(_whole(-MAX_COUNT, MAX_COUNT)), "retries": _optional(
        _whole(0, MAX_COUNT)), "queue": _optional(_NAME), "task_id": _optional(_NAME),
    "parent_id": _optional(_NAME), "root_id": _optional(_NAME), "group_id": _optional(_NAME),
    "headers": _optional(_kind(dict)),
}


def decode(body: str | bytes, max_size: int | None = MAX_BODY_SIZE) -> TaskMessage:
    """Parse a message body; raise `MessageDecodeError` saying exactly what is wrong.

    Everything is checked before anything acts on the message: the JSON itself (size,
    nesting, finite numbers, valid text: `parse_json`), every field's type and range, the
    per-call options a node reads, and the shape of the workflow it carries. `max_size`
    None skips the size check (a pool child reading what its node already checked).
    """
    try:
        data = parse_json(body, max_size)
    except ValueError as exc:
        raise MessageDecodeError(f"body is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise MessageDecodeError(f"body is a JSON {type(data).__name__}, not an object")
    version = data.get("v")
    if version != VERSION or isinstance(version, bool):
        raise MessageDecodeError(
            f"unsupported message version {_short(version, 40)} (this node reads version "
            f"{VERSION})", "upgrade the nodes, or check what sends to this queue")
    missing = [key for key in ("id", "task", "args", "kwargs") if key not in data]
    if missing:
        raise MessageDecodeError(f"missing field(s) {', '.join(missing)}")
    fields = {key: check(key, data[key]) for key, check in _REQUIRED.items()}
    for key, check in _OPTIONAL.items():
        value = data.get(key)
        if value is None and key not in _NULL_OK:
            continue  # absent, or null where null means "the default"
        fields[key] = check(key, value)
    _check_options(fields.get("options", {}), _TASK_OPTIONS, "options")
    _check_headers(fields.get("headers", {}))
    _check_callbacks(fields.get("callbacks", {}), "callbacks")
    return TaskMessage(**fields)


_REQUIRED: dict[str, Callable[[str, Any], Any]] = {
    "id": _NAME, "task": _NAME, "args": _kind(list), "kwargs": _kind(dict)}


def _check_options(options: dict, checks: dict[str, Callable[[str, Any], Any]],
                   where: str) -> None:
    for key, check in checks.items():
        if key in options:
            check(f"{where}.{key}", options[key])


def _check_headers(headers: dict) -> None:
    if REDELIVERY_HEADER in headers:
        _whole(0, MAX_COUNT)(f"headers.{REDELIVERY_HEADER}", headers[REDELIVERY_HEADER])


def _check_callbacks(callbacks: dict, where: str) -> None:
    """The workflow a message carries (see the format above): lists of signature dicts
    under link, link_error and chain; a chord's group id, size and body."""
    for key in ("link", "link_error", "chain"):
        if callbacks.get(key) is not None:
            _check_signatures(callbacks[key], f"{where}.{key}")
    chord = callbacks.get("chord")
    if chord is not None:
        _kind(dict)(f"{where}.chord", chord)
        _NAME(f"{where}.chord.group", chord.get("group"))
        _whole(0, MAX_COUNT)(f"{where}.chord.size", chord.get("size"))
        if chord.get("body") is not None:
            _check_signature(chord["body"], f"{where}.chord.body")


def _check_signatures(value: Any, where: str) -> None:
    for index, item in enumerate(_kind(list)(where, value)):
        _check_signature(item, f"{where}[{index}]")


def _check_signature(data: Any, where: str) -> None:
    """A signature dict (`fleet.engine.canvas` `to_dict`), of any kind, nested included."""
    _kind(dict)(where, data)
    kind = data.get("kind", "signature")
    if kind in ("chain", "group"):
        _check_signatures(data.get("tasks"), f"{where}.tasks")
    elif kind == "chord":
        _check_signature(data.get("header"), f"{where}.header")
        if data.get("body") is not None:
            _check_signature(data["body"], f"{where}.body")
    elif kind == "signature":
        _NAME(f"{where}.task", data.get("task"))
        _optional(_kind(list))(f"{where}.args", data.get("args"))
        _optional(_kind(dict))(f"{where}.kwargs", data.get("kwargs"))
    else:
        _refuse(f"{where}.kind", kind, "signature, chain, group or chord")
    options = _optional(_kind(dict))(f"{where}.options", data.get("options")) or {}
    _check_options(options, _CALL_OPTIONS, f"{where}.options")
    for key in ("link", "link_error"):
        if options.get(key) is not None:
            links = options[key] if isinstance(options[key], list) else [options[key]]
            _check_signatures(links, f"{where}.options.{key}")
    if options.get("callbacks") is not None:
        _check_callbacks(_kind(dict)(f"{where}.options.callbacks", options["callbacks"]),
                         f"{where}.options.callbacks")
