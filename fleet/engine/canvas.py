"""Workflows as plain data: `Signature`, `chain`, `group` and `chord`.

A signature is a task call that has not happened yet: a task name, arguments, keyword
arguments and call options. It serialises to JSON (`to_dict` / `Signature.from_dict`), which
is how callbacks and the rest of a workflow travel inside task messages (see the
`callbacks` field in `fleet.engine.message`). Composite signatures:

* `chain(a, b, c)` or `a | b | c` - each result is prepended to the next task's arguments.
* `group(sigs)` - run in parallel; a `GroupResult` gives the results in submission order.
* `chord(header, body)` - a group, then the body once with the list of header results.
  `group | task` becomes a chord.

Partial arguments: arguments given when a signature is applied are **prepended** to its own
(`add.s(4).delay(6)` calls `add(6, 4)`), except for immutable signatures (`task.si(...)`).

Sending a workflow happens in two steps: `freeze` gives every task its id (so the returned
result handles exist before anything runs), then `_build` turns it into the messages to send
now into a `Plan`. The rest (chain continuations, chord bodies, callbacks) is sent later by
whoever finishes a task: see `fleet.engine.workflow`. `task.map`, `starmap` and `chunks` are
signatures of built-in tasks: see `fleet.engine.maptasks`.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fleet.engine import hooks
from fleet.engine import message as codec
from fleet.engine.results import AsyncResult, GroupResult, save_group
from fleet.engine.sending import announce, build_message
from fleet.engine.transport.base import Outgoing

if TYPE_CHECKING:
    from fleet.engine.app import Fleet
    from fleet.engine.message import TaskMessage

#: Keys a signature dict may have, per kind (for from_dict's error messages).
KINDS = ("signature", "chain", "group", "chord")


@dataclass
class Plan:
    """What applying a workflow sends now: messages, and group member lists to store first
    (a chord's last header task reads its group's ids from the result store)."""

    messages: list[TaskMessage] = field(default_factory=list)
    groups: dict[str, list[str]] = field(default_factory=dict)
    #: Results to store (chain tasks that will never run because an earlier one failed).
    metas: list[dict] = field(default_factory=list)

    def send(self, app: Fleet) -> None:
        """Store the group lists and results, then put every message in one round trip."""
        self.store(app)
        if not self.messages:
            return
        if hooks.before_task_publish.receivers:
            announce(hooks.before_task_publish, self.messages)
        app.broker.put([Outgoing(m.id, m.queue, m.encode(), m.priority, m.eta)
                        for m in self.messages])
        if hooks.after_task_publish.receivers:
            announce(hooks.after_task_publish, self.messages)

    def store(self, app: Fleet) -> None:
        for group_id, ids in self.groups.items():
            save_group(app, group_id, ids)
        if self.metas:
            app.backend.save(self.metas)


class Signature:
    """One task call, not yet made: `add.s(2)`, `signature("proj.add", (2,), app=app)` (the
    current app when none is given: see `fleet.engine.current`)."""

    kind = "signature"

    def __init__(self, task: Any, args: Iterable = (), kwargs: dict | None = None,
                 options: dict | None = None, immutable: bool = False,
                 app: Fleet | None = None):
        name = getattr(task, "name", task)
        if not isinstance(name, str):
            raise TypeError(f"signature needs a task or a task name, not {type(task).__name__}")
        self.task = name
        self.args = tuple(args)
        self.kwargs = dict(kwargs or {})
        self.options = dict(options or {})
        self.immutable = immutable
        self.app = app if app is not None else getattr(task, "app", None)

    def __repr__(self) -> str:
        args = ", ".join([*map(repr, self.args), *(f"{k}={v!r}" for k, v in self.kwargs.items())])
        return f"{self.task}{'!' if self.immutable else ''}({args})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Signature) and self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]  # mutable, like a dict

    def __deepcopy__(self, memo: dict) -> Signature:
        return Signature.from_dict(self.to_dict(), self.app)  # never copies the app

    # -- building -----------------------------------------------------------------------------

    def clone(self, args: Iterable = (), kwargs: dict | None = None,
              **options: Any) -> Signature:
        """A copy with `args` prepended (unless immutable), `kwargs` and `options` merged."""
        new = copy.copy(self)
        new.args, new.kwargs = self._merge(tuple(args), kwargs or {})
        new.options = {**copy.deepcopy(self.options), **options}
        return new

    def _merge(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        if self.immutable:
            return self.args, dict(self.kwargs)
        return args + self.args, {**self.kwargs, **kwargs}

    def set(self, **options: Any) -> Signature:
        """Set call options (queue, countdown, priority, ...) in place; returns self."""
        for key in ("link", "link_error"):
            if key in options:
                options[key] = _as_list(options[key])
        self.options.update(options)
        return self

    def set_immutable(self, immutable: bool) -> Signature:
        self.immutable = immutable
        return self

    def link(self, callback: Signature) -> Signature:
        """Run `callback` with this task's result when it succeeds; returns the callback."""
        self.options.setdefault("link", []).append(callback)
        return callback

    def link_error(self, errback: Signature) -> Signature:
        """Run `errback(task_id, error)` when this task fails; returns the errback."""
        self.options.setdefault("link_error", []).append(errback)
        return errback

    def __or__(self, other: Signature) -> Signature:
        if isinstance(other, Signature):
            return Chain(self, other, app=self.app or other.app)
        return NotImplemented

    # -- calling ------------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Run the task here, now, in this process (no message)."""
        args, kwargs = self._merge(args, kwargs)
        return self._app().get_task(self.task)(*args, **kwargs)

    def delay(self, *args: Any, **kwargs: Any) -> AsyncResult:
        return self.apply_async(args, kwargs)

    def apply_async(self, args: Iterable = (), kwargs: dict | None = None,
                    **options: Any) -> Any:
        """Send it, with `args` prepended; returns the result handle (`AsyncResult` for a
        task or chain, `GroupResult` for a group)."""
        app = self._app()
        sig = self.clone().set(**options) if options else copy.deepcopy(self)
        sig.app = app
        result = sig.freeze()
        plan = Plan()
        sig._build(app, tuple(args), dict(kwargs or {}), [], plan, {})
        plan.send(app)
        return result

    def _app(self) -> Fleet:
        """Its app: the task's or `app=`'s, else the current app (fleet.engine.current)."""
        if self.app is None:
            from fleet.engine.current import current_app

            return current_app()
        return self.app

    # -- ids and messages ---------------------------------------------------------------------

    @property
    def id(self) -> str | None:
        return self.options.get("task_id")

    def freeze(self, group_id: str | None = None) -> Any:
        """Give the task its id (kept if it has one) and return its result handle."""
        self.options.setdefault("task_id", codec.new_id())
        if group_id is not None:
            self.options["group_id"] = group_id
        return AsyncResult(self.options["task_id"], app=self._app())

    def leaf(self) -> Signature:
        """The task whose result is this signature's result."""
        return self

    def result_ids(self) -> list[str]:
        """Every task id this (frozen) signature will produce a result under."""
        return [self.id] if self.id else []

    def errbacks(self) -> list[Signature]:
        return [_revive(e, self.app) for e in self.options.get("link_error", ())]

    def _build(self, app: Fleet, args: tuple, kwargs: dict, rest: list[Signature],
               plan: Plan, parent: dict) -> None:
        """Add this task's message to `plan`; `rest` is the chain that follows it."""
        args, kwargs = self._merge(args, kwargs)
        # A shallow copy is enough: only this dict is changed below, and build_message
        # copies what it changes (headers, callbacks); a deep copy per task was the
        # largest cost of a big group's send.
        options = dict(self.options)
        callbacks = {}
        chord_info = options.pop("chord", None)
        if chord_info is not None:
            callbacks["chord"] = chord_info
        if rest:
            callbacks["chain"] = [sig.to_dict() for sig in rest]
        options.update(parent, callbacks=callbacks)
        plan.messages.append(build_message(app, self.task, args, kwargs, options,
                                           task=app.tasks.get(self.task)))

    # -- JSON ---------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"kind": "signature", "task": self.task, "args": list(self.args),
                "kwargs": self.kwargs, "options": _options_to_dict(self.options),
                "immutable": self.immutable}

    @staticmethod
    def from_dict(data: dict | Signature, app: Fleet | None = None) -> Signature:
        """The inverse of `to_dict`, for every kind (signature, chain, group, chord)."""
        if isinstance(data, Signature):
            return data
        if not isinstance(data, dict):
            raise TypeError(f"a signature dict is a JSON object, not {type(data).__name__}")
        kind = data.get("kind", "signature")
        if kind == "chain":
            return Chain(*[Signature.from_dict(t, app) for t in data["tasks"]],
                         options=_options_from_dict(data.get("options"), app), app=app)
        if kind == "group":
            return Group([Signature.from_dict(t, app) for t in data["tasks"]],
                         options=_options_from_dict(data.get("options"), app), app=app)
        if kind == "chord":
            body = data.get("body")
            return Chord(Signature.from_dict(data["header"], app),
                         Signature.from_dict(body, app) if body is not None else None,
                         options=_options_from_dict(data.get("options"), app), app=app)
        if kind != "signature":
            raise TypeError(f"unknown signature kind {kind!r}; expected one of {KINDS}")
        return Signature(data["task"], data.get("args", ()), data.get("kwargs"),
                         _options_from_dict(data.get("options"), app),
                         bool(data.get("immutable")), app=app)


def _as_list(value: Any) -> list:
    return list(value) if isinstance(value, list | tuple) else [value]


def _revive(value: Any, app: Fleet | None) -> Signature:
    return value if isinstance(value, Signature) else Signature.from_dict(value, app)


def _options_to_dict(options: dict) -> dict:
    result = dict(options)
    for key in ("link", "link_error"):
        if key in result:
            result[key] = [s.to_dict() if isinstance(s, Signature) else s for s in result[key]]
    return result


def _options_from_dict(options: dict | None, app: Fleet | None) -> dict:
    result = dict(options or {})
    for key in ("link", "link_error"):
        if key in result:
            result[key] = [_revive(s, app) for s in _as_list(result[key])]
    return result


class Chain(Signature):
    """Tasks run one after another, each result prepended to the next one's arguments."""

    kind = "chain"

    def __init__(self, *tasks: Any, options: dict | None = None, app: Fleet | None = None):
        if len(tasks) == 1 and not isinstance(tasks[0], Signature):
            tasks = tuple(tasks[0])  # chain(iterable)
        flat: list[Signature] = []
        for item in tasks:
            if not isinstance(item, Signature):
                raise TypeError(f"chain takes signatures, not {type(item).__name__}")
            flat.extend(item.tasks if type(item) is Chain else [item])
        self.tasks = _upgrade_groups(flat)
        app = app or next((t.app for t in self.tasks if t.app is not None), None)
        super().__init__("fleet.chain", options=options, app=app)

    def __repr__(self) -> str:
        return " | ".join(repr(task) for task in self.tasks)

    def __or__(self, other: Signature) -> Signature:
        if isinstance(other, Signature):
            return Chain(self, other, app=self.app or other.app)
        return NotImplemented

    def __call__(self, *args: Any, **kwargs: Any) -> AsyncResult:
        """Calling a chain sends it (with partial arguments for its first task)."""
        return self.apply_async(args, kwargs)

    def clone(self, args: Iterable = (), kwargs: dict | None = None, **options: Any) -> Chain:
        tasks = [t.clone() for t in self.tasks]
        if tasks and (args or kwargs):
            tasks[0] = tasks[0].clone(args, kwargs)
        return Chain(*tasks, options={**copy.deepcopy(self.options), **options}, app=self.app)

    def _merge(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return args, kwargs  # partial arguments go to the first task (see _build)

    @property
    def id(self) -> str | None:
        return self.tasks[-1].id if self.tasks else None

    def freeze(self, group_id: str | None = None) -> Any:
        """Freeze every task; the result is the last one's, its `parent` the one before."""
        if not self.tasks:
            raise ValueError("an empty chain has nothing to run")
        link, link_error = self.options.pop("link", []), self.options.pop("link_error", [])
        shared = {k: v for k, v in self.options.items() if k not in ("task_id", "group_id")}
        previous = None
        for index, task in enumerate(self.tasks):
            task.app = task.app or self.app
            _default_options(task, {k: v for k, v in shared.items()
                                    if index == 0 or k not in FIRST_TASK_ONLY})
            for errback in link_error:  # an error anywhere in the chain calls the errbacks
                task.link_error(errback)
            last = index == len(self.tasks) - 1
            result = task.freeze(group_id if last else None)
            _set_parent(result, previous)
            previous = result
        for callback in link:
            self.tasks[-1].link(callback)
        return previous

    def leaf(self) -> Signature:
        return self.tasks[-1].leaf()

    def result_ids(self) -> list[str]:
        return [i for task in self.tasks for i in task.result_ids()]

    def errbacks(self) -> list[Signature]:
        return self.tasks[-1].errbacks() if self.tasks else []

    def _build(self, app: Fleet, args: tuple, kwargs: dict, rest: list[Signature],
               plan: Plan, parent: dict) -> None:
        first, *others = self.tasks
        first._build(app, args, kwargs, others + rest, plan, parent)

    def to_dict(self) -> dict:
        return {"kind": "chain", "tasks": [t.to_dict() for t in self.tasks],
                "options": _options_to_dict(self.options)}


#: Call options of a chain that only its first task takes (the others start when ready).
FIRST_TASK_ONLY = frozenset({"countdown", "eta"})


def _default_options(sig: Signature, options: dict) -> None:
    """Give `sig` (and, for a group or chord, its tasks) the options it does not set."""
    if not options:
        return
    if isinstance(sig, Chord):
        _default_options(sig.header, options)
        if sig.body is not None:
            _default_options(sig.body, options)
    elif isinstance(sig, Chain | Group):
        for task in sig.tasks:
            _default_options(task, options)
    else:
        for key, value in options.items():
            sig.options.setdefault(key, value)


def _set_parent(result: Any, parent: Any) -> None:
    """Hang `parent` above the first result of `result`'s own parent line."""
    if parent is None:
        return
    top = result
    while getattr(top, "parent", None) is not None:
        top = top.parent
    if top is not parent:
        top.parent = parent


def _upgrade_groups(tasks: list[Signature]) -> list[Signature]:
    """In a chain, a group followed by anything becomes a chord whose body is the rest's
    first task (so `group | task` waits for the whole group)."""
    result: list[Signature] = []
    for task in tasks:
        if result and type(result[-1]) is Group:
            result.append(Chord(result.pop(), task, app=task.app))
        else:
            result.append(task)
    return result


class Group(Signature):
    """Tasks run in parallel; `GroupResult.get()` lists their results in order."""

    kind = "group"

    def __init__(self, *tasks: Any, options: dict | None = None, app: Fleet | None = None):
        if len(tasks) == 1 and not isinstance(tasks[0], Signature):
            tasks = tuple(tasks[0])  # group(iterable)
        members: list[Signature] = []
        for item in tasks:
            if not isinstance(item, Signature):
                raise TypeError(f"group takes signatures, not {type(item).__name__}")
            members.extend(item.tasks if type(item) is Group else [item])
        self.tasks = members
        app = app or next((t.app for t in self.tasks if t.app is not None), None)
        super().__init__("fleet.group", options=options, app=app)

    def __repr__(self) -> str:
        return f"group([{', '.join(repr(t) for t in self.tasks)}])"

    def __or__(self, other: Signature) -> Signature:
        if isinstance(other, Signature):  # group | task is a chord
            chained = Chain(self, other, app=self.app or other.app)
            return chained.tasks[0] if len(chained.tasks) == 1 else chained
        return NotImplemented

    def __call__(self, *args: Any, **kwargs: Any) -> GroupResult:
        """Calling a group sends it (partial arguments go to every member)."""
        return self.apply_async(args, kwargs)

    def __len__(self) -> int:
        return len(self.tasks)

    def clone(self, args: Iterable = (), kwargs: dict | None = None, **options: Any) -> Group:
        tasks = [t.clone(args, kwargs) for t in self.tasks]
        return Group(tasks, options={**copy.deepcopy(self.options), **options}, app=self.app)

    def _merge(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return args, kwargs

    @property
    def id(self) -> str | None:
        return self.options.get("group_id")

    def freeze(self, group_id: str | None = None) -> GroupResult:
        link_error = self.options.pop("link_error", [])
        if self.options.get("link"):
            raise TypeError("a group has no single result to link to: link its tasks, or use "
                            "a chord (group | callback) to run something after all of them")
        own = {k: v for k, v in self.options.items() if k not in ("task_id", "group_id")}
        gid = self.options.setdefault("group_id", codec.new_id())
        results = []
        for task in self.tasks:
            task.app = task.app or self.app
            _default_options(task, own)
            for errback in link_error:
                task.link_error(errback)
            results.append(task.freeze(gid))
        return GroupResult(gid, results, app=self._app())

    def leaf(self) -> Signature:
        raise TypeError("a group has no single last task")

    def result_ids(self) -> list[str]:
        return [i for task in self.tasks for i in task.result_ids()]

    def errbacks(self) -> list[Signature]:
        return []

    def _build(self, app: Fleet, args: tuple, kwargs: dict, rest: list[Signature],
               plan: Plan, parent: dict) -> None:
        if rest:  # only reachable through a hand-made dict: chains upgrade groups to chords
            Chord(self, Chain(*rest, app=app), app=app)._build(app, args, kwargs, [], plan,
                                                                parent)
            return
        for task in self.tasks:
            task._build(app, args, kwargs, [], plan, parent)

    def to_dict(self) -> dict:
        return {"kind": "group", "tasks": [t.to_dict() for t in self.tasks],
                "options": _options_to_dict(self.options)}


class Chord(Signature):
    """A group (the header), then the body once, called with the list of header results.

    The header tasks count their completions in the result store; the one that completes
    the count sends the body (see `fleet.engine.workflow`). A failed header task fails the
    chord at once: the body's result becomes that failure and its errbacks are called.
    """

    kind = "chord"

    def __init__(self, header: Any, body: Signature | None = None,
                 options: dict | None = None, app: Fleet | None = None):
        self.header = header if isinstance(header, Group) else Group(header)
        self.body = body
        app = app or self.header.app or (body.app if body is not None else None)
        super().__init__("fleet.chord", options=options, app=app)

    def __repr__(self) -> str:
        return f"chord({self.header!r}, {self.body!r})"

    def __call__(self, body: Signature | None = None, *args: Any, **kwargs: Any) -> Any:
        """`chord(header)(body)` sends it; `chord(header, body)(*args)` too, with partial
        arguments for the header tasks."""
        if isinstance(body, Signature):
            return Chord(self.header, body, options=self.options, app=self.app).apply_async()
        return self.apply_async(((body,) if body is not None else ()) + args, kwargs)

    def __or__(self, other: Signature) -> Signature:
        if isinstance(other, Signature):
            return Chain(self, other, app=self.app or other.app)
        return NotImplemented

    def clone(self, args: Iterable = (), kwargs: dict | None = None, **options: Any) -> Chord:
        return Chord(self.header.clone(args, kwargs), self.body.clone() if self.body else None,
                     options={**copy.deepcopy(self.options), **options}, app=self.app)

    def _merge(self, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        return args, kwargs

    @property
    def id(self) -> str | None:
        return self.body.id if self.body is not None else None

    def _need_body(self) -> Signature:
        if self.body is None:
            raise TypeError("a chord needs a body: chord(header, body) or chord(header)(body)")
        return self.body

    def freeze(self, group_id: str | None = None) -> AsyncResult:
        body = self._need_body()
        body.app = body.app or self.app
        for key in ("link", "link_error"):
            for sig in self.options.pop(key, []):
                getattr(body, key)(sig)
        shared = {k: v for k, v in self.options.items() if k not in ("task_id", "group_id")}
        _default_options(self.header, shared)
        _default_options(body, shared)
        header_result = self.header.freeze()
        result = body.freeze(group_id)
        _set_parent(result, header_result)
        return result

    def leaf(self) -> Signature:
        return self._need_body().leaf()

    def result_ids(self) -> list[str]:
        return self.header.result_ids() + self._need_body().result_ids()

    def errbacks(self) -> list[Signature]:
        return self._need_body().errbacks()

    def _build(self, app: Fleet, args: tuple, kwargs: dict, rest: list[Signature],
               plan: Plan, parent: dict) -> None:
        body = self._need_body()
        if rest:
            body = Chain(body, *rest, app=app)
        header = self.header.clone()
        if not header.tasks:  # nothing to wait for: the body runs now, with no results
            body._build(app, ([],), {}, [], plan, parent)
            return
        group_id = header.options.get("group_id") or codec.new_id()
        info = {"group": group_id, "size": len(header.tasks), "body": body.to_dict()}
        ids = []
        for task in header.tasks:
            leaf = task.leaf()
            if not isinstance(leaf, Signature) or type(leaf) is not Signature:
                raise TypeError(f"chord header member {task!r} must be a task or a chain "
                                "ending in a task")
            leaf.options["chord"] = info
            leaf.options["group_id"] = group_id
            ids.append(leaf.id)
        plan.groups[group_id] = ids
        for task in header.tasks:
            task._build(app, args, kwargs, [], plan, parent)

    def to_dict(self) -> dict:
        return {"kind": "chord", "header": self.header.to_dict(),
                "body": self.body.to_dict() if self.body is not None else None,
                "options": _options_to_dict(self.options)}


# -- the public spellings -----------------------------------------------------------------------


def signature(task: Any, args: Iterable = (), kwargs: dict | None = None,
              app: Fleet | None = None, immutable: bool = False, **options: Any) -> Signature:
    """`signature("proj.add", (2,), app=app, countdown=1)`; a dict makes it from JSON."""
    if isinstance(task, dict):
        return Signature.from_dict(task, app)
    sig = Signature(task, args, kwargs, immutable=immutable, app=app)
    return sig.set(**options)


subtask = signature
chain = Chain
group = Group
chord = Chord
