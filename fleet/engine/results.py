"""Results: what a task returned or raised, stored as JSON under `result:<task id>`.

A stored result ("meta") looks like::

    {"id": "...", "state": "SUCCESS", "result": 4, "task": "proj.tasks.add",
     "node": "w1@host", "date_done": 1732300000.5, "retries": 0,
     "exc_type": null, "exc_module": null, "exc_message": null, "exc_args": null,
     "traceback": null}

Failures carry the exception's type, module, message, arguments (when JSON can hold them)
and the traceback text, so `get()` re-raises the same type where it is importable here and a
`RemoteError` carrying the remote type name, message and traceback otherwise. Unknown ids are
PENDING, as are results that expired (`result_expires`).
"""

from __future__ import annotations

import builtins
import sys
import time
import traceback as tb
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from fleet.engine import message as codec
from fleet.engine import states
from fleet.engine.transport.base import StoredResult
from fleet.exceptions import BrokerDataError, RemoteError, TimeoutError

if TYPE_CHECKING:
    from fleet.engine.app import Fleet
    from fleet.engine.request import Request
    from fleet.engine.task import Task
    from fleet.engine.transport.base import Transport

RESULT_PREFIX = "result:"


def result_key(task_id: str) -> str:
    return RESULT_PREFIX + task_id


def pending_meta(task_id: str) -> dict:
    return {"id": task_id, "state": states.PENDING, "result": None, "traceback": None}


def success_meta(task_id: str, value: Any, **extra: Any) -> dict:
    return {"id": task_id, "state": states.SUCCESS, "result": value, "traceback": None,
            "date_done": time.time(), **extra}


def exception_meta(task_id: str, state: str, exc: BaseException, traceback_text: str | None,
                   **extra: Any) -> dict:
    """Describe an exception in JSON terms (type, module, message, args, traceback)."""
    exc_type = type(exc)
    args = list(exc.args)
    try:
        codec.dumps(args)
    except Exception:
        args = None
    return {
        "id": task_id,
        "state": state,
        "result": None,
        "exc_type": exc_type.__qualname__,
        "exc_module": exc_type.__module__,
        "exc_message": str(exc),
        "exc_args": args,
        "traceback": traceback_text,
        "date_done": time.time(),
        **extra,
    }


def update_state(task: Task, request: Request, task_id: str | None, state: str | None,
                 meta: Any) -> None:
    """`Task.update_state`: store a custom state (and its meta) of a running task now."""
    task_id = task_id or request.id
    if not task_id:
        raise ValueError("update_state() has no task id: call it from a running task, "
                         "or pass task_id=")
    if not state or not isinstance(state, str):
        raise ValueError("update_state() needs a state, e.g. state=\"PROGRESS\"")
    if state in states.READY_STATES:
        raise ValueError(f"update_state(state={state!r}): the node stores a task's outcome "
                         "itself; use a state of your own, such as \"PROGRESS\"")
    own = task_id == request.id
    stored = {"id": task_id, "state": state, "result": meta, "traceback": None,
              "task": task.name if own else None, "node": request.hostname if own else None,
              "retries": request.retries if own else 0, "date_done": None}
    task.app.backend.save([stored])
    if request.send_events:
        from fleet.engine.events import send_task_updated

        send_task_updated(task.app, stored, request)


def format_exception(exc: BaseException) -> str:
    return "".join(tb.format_exception(type(exc), exc, exc.__traceback__))


def exception_from_meta(meta: dict) -> Exception:
    """Rebuild the task's exception: the same type if importable here, else RemoteError.

    Only modules already imported in this process are looked in (a result never makes us
    import code), which covers the task's own module whenever the caller imported the task.
    Only `Exception` subclasses are rebuilt: anything else (SystemExit, KeyboardInterrupt,
    GeneratorExit, a BaseException subclass named by a stored result) arrives as a
    RemoteError, so a result can never stop the process that reads it.
    """
    name = _text(meta.get("exc_type")) or "Exception"
    module_name = _text(meta.get("exc_module")) or "builtins"
    message = _text(meta.get("exc_message"))
    remote_tb = _text(meta.get("traceback")) or None
    cls = _lookup_exception_class(module_name, name)
    exc: Exception | None = None
    if cls is not None:
        args = meta.get("exc_args")
        exc = _instantiate(cls, args if isinstance(args, list) else None, message)
    if exc is None:
        shown = name if module_name in ("builtins", "__main__") else f"{module_name}.{name}"
        exc = RemoteError(shown, message, remote_tb)
    elif remote_tb:
        exc.add_note(f"Remote traceback (from the worker):\n{remote_tb.rstrip()}")
    return exc


def _text(value: Any) -> str:
    """A stored result's text field; anything else (not written by fleet) reads as none."""
    return value if isinstance(value, str) else ""


def _lookup_exception_class(module_name: str, name: str) -> type[Exception] | None:
    module = builtins if module_name == "builtins" else sys.modules.get(module_name)
    obj: Any = module
    for part in name.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    if isinstance(obj, type) and issubclass(obj, Exception):
        return obj
    return None


def _instantiate(cls: type[Exception], args: list | None, message: str) -> Exception | None:
    for attempt in (args, [message] if message else [], None):
        if attempt is None:
            continue
        try:
            return cls(*attempt)
        except Exception:
            continue
    try:
        return cls()
    except Exception:
        return None


#: Results nest as deep as a task's return value; only the stack limits what can be read.
RESULT_DEPTH = 100_000


def parse_meta(task_id: str, text: str) -> dict:
    """A stored result, checked: a JSON object with a text `state`. Anything else was not
    written by fleet and is a BrokerDataError naming the task (never a bare ValueError)."""
    try:
        meta = codec.parse_json(text, None, RESULT_DEPTH)
    except ValueError as exc:
        meta, why = None, str(exc)
    else:
        why = "not a JSON object with a state"
    if not isinstance(meta, dict) or not isinstance(meta.get("state"), str):
        raise BrokerDataError(f"the stored result of task {task_id} cannot be read ({why})",
                              "it was not written by fleet: delete it with "
                              "AsyncResult(id).forget()")
    return meta


class ResultBackend:
    """Stores and reads results in a transport's value store, with `result_expires`."""

    def __init__(self, app: Fleet, store: Transport):
        self.app = app
        self.store = store

    @property
    def ttl(self) -> float | None:
        expires = self.app.conf.result_expires
        return float(expires) if expires else None

    def stored(self, meta: dict) -> StoredResult:
        """A meta ready for `Transport.commit`/`set_values` (encoded, with expiry)."""
        return StoredResult(result_key(meta["id"]), codec.dumps(meta), self.ttl)

    def store_encoded(self, task_id: str, encoded_meta: str) -> StoredResult:
        return StoredResult(result_key(task_id), encoded_meta, self.ttl)

    def save(self, metas: Sequence[dict]) -> None:
        self.store.set_values([self.stored(meta) for meta in metas])

    def get_meta(self, task_id: str) -> dict:
        text = self.store.get_value(result_key(task_id))
        if text is None:
            return pending_meta(task_id)
        return parse_meta(task_id, text)

    def get_metas(self, task_ids: Sequence[str]) -> list[dict]:
        texts = self.store.get_values([result_key(task_id) for task_id in task_ids])
        return [pending_meta(task_id) if text is None else parse_meta(task_id, text)
                for task_id, text in zip(task_ids, texts, strict=True)]

    def forget(self, task_ids: Sequence[str]) -> None:
        self.store.delete_values([result_key(task_id) for task_id in task_ids])

    def wait(self, task_id: str, timeout: float | None, interval: float) -> dict:
        """Wait until the task is ready, on the store's `wait_value` in slices of at most
        `interval` seconds: Redis wakes us when the result is stored, others poll briefly."""
        deadline = None if timeout is None else time.monotonic() + timeout
        key = result_key(task_id)
        text = None
        while True:
            remaining = interval if deadline is None else deadline - time.monotonic()
            text = self.store.wait_value(key, max(0.0, min(interval, remaining)), text)
            meta = pending_meta(task_id) if text is None else parse_meta(task_id, text)
            if meta["state"] in states.READY_STATES:
                return meta
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(
                    f"task {task_id} is still {meta['state']} after {timeout:g}s",
                    "a worker consuming its queue may not be running "
                    "(unknown or expired ids stay PENDING)",
                )


class AsyncResult:
    """A handle on a task's result: `state`, `ready()`, `get()`, ...

    `AsyncResult(id)` alone uses the current app (see `fleet.engine.current`); `backend=`
    reads from that result backend instead of the app's.
    """

    def __init__(self, id: str | None = None, app: Fleet | None = None,
                 parent: AsyncResult | None = None, *, task_id: str | None = None,
                 backend: ResultBackend | None = None):
        if (id or task_id) is None:
            raise TypeError("AsyncResult() needs the task's id: AsyncResult(id)")
        self.id: str = id or task_id  # type: ignore[assignment]
        self.app = app if app is not None else \
            backend.app if backend is not None else _current_app()
        self.parent = parent
        self._backend = backend
        self._cache: dict | None = None

    def __repr__(self) -> str:
        return f"<AsyncResult {self.id}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AsyncResult) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def task_id(self) -> str:
        return self.id

    @property
    def backend(self) -> ResultBackend:
        """Where this result is read from: the app's result backend (or the one given)."""
        return self._backend if self._backend is not None else self.app.backend

    def _meta(self) -> dict:
        if self._cache is not None:
            return self._cache
        meta = self.backend.get_meta(self.id)
        if meta["state"] in states.READY_STATES:
            self._cache = meta  # a ready result never changes
        return meta

    @property
    def state(self) -> str:
        return self._meta()["state"]

    status = state

    @property
    def result(self) -> Any:
        """The return value when SUCCESS, the exception when failed (or retried, or
        revoked), the meta of a custom state (`update_state`), else None."""
        meta = self._meta()
        if meta["state"] in states.EXCEPTION_STATES and meta.get("exc_type"):
            return exception_from_meta(meta)
        return meta.get("result")

    info = result

    @property
    def traceback(self) -> str | None:
        return self._meta().get("traceback")

    @property
    def date_done(self) -> float | None:
        return self._meta().get("date_done")

    @property
    def name(self) -> str | None:
        return self._meta().get("task")

    def ready(self) -> bool:
        return self.state in states.READY_STATES

    def successful(self) -> bool:
        return self.state == states.SUCCESS

    def failed(self) -> bool:
        return self.state == states.FAILURE

    def get(self, timeout: float | None = None, propagate: bool = True,
            interval: float = 0.1) -> Any:
        """Wait for the result and return it; re-raise the task's exception if it failed.

        `timeout` (seconds) raises `fleet.exceptions.TimeoutError`; None waits forever.
        With `propagate=False` a failure returns the exception instead of raising it.
        """
        meta = self._cache or self.backend.wait(self.id, timeout, interval)
        self._cache = meta
        if meta["state"] == states.SUCCESS:
            return meta.get("result")
        exc = exception_from_meta(meta)
        if propagate:
            raise exc
        return exc

    wait = get

    def revoke(self, terminate: bool = False, signal: str | int = "TERM",
               reply: bool = False, timeout: float | None = None) -> Any:
        """Never run this task; with `terminate`, also kill it with `signal` if it runs.

        Durable: stored in the broker, so nodes started later refuse it too.
        """
        return self.app.control.revoke(self.id, terminate=terminate, signal=signal,
                                       reply=reply, timeout=timeout)

    def forget(self) -> None:
        """Delete the stored result."""
        self._cache = None
        self.backend.forget([self.id])

    def as_dict(self) -> dict:
        return dict(self._meta())


# -- groups -------------------------------------------------------------------------------------

GROUP_PREFIX = "group:"


def save_group(app: Fleet, group_id: str, task_ids: Sequence[str]) -> None:
    """Store a group's member ids (in order) under `group:<id>`, with `result_expires`."""
    backend = app.backend
    value = codec.dumps({"id": group_id, "results": list(task_ids)})
    backend.store.set_values([StoredResult(GROUP_PREFIX + group_id, value, backend.ttl)])


def load_group(app: Fleet, group_id: str) -> list[str] | None:
    text = app.backend.store.get_value(GROUP_PREFIX + group_id)
    if text is None:
        return None
    try:
        ids = codec.parse_json(text, None, RESULT_DEPTH)["results"]
    except (ValueError, TypeError, KeyError):
        ids = None
    if not isinstance(ids, list) or not all(isinstance(i, str) for i in ids):
        raise BrokerDataError(f"the stored group {group_id} is not a list of task ids",
                              "it was not written by fleet: delete it")
    return ids


class GroupResult:
    """The results of a group, in the order its tasks were given."""

    def __init__(self, group_id: str, results: Sequence[Any], app: Fleet | None = None,
                 parent: Any = None):
        self.id = group_id
        self.results = list(results)
        self.app = app if app is not None else _current_app()
        self.parent = parent

    def __repr__(self) -> str:
        return f"<GroupResult {self.id} [{', '.join(r.id for r in self.results)}]>"

    def __len__(self) -> int:
        return len(self.results)

    def __iter__(self) -> Iterator[Any]:
        return iter(self.results)

    def __getitem__(self, index: int) -> Any:
        return self.results[index]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GroupResult) and other.id == self.id and \
            [r.id for r in other.results] == [r.id for r in self.results]

    def __hash__(self) -> int:
        return hash(self.id)

    def _metas(self) -> list[dict]:
        return self.app.backend.get_metas([r.id for r in self.results])

    def ready(self) -> bool:
        """True when every task has finished (succeeded, failed or was revoked)."""
        return all(meta["state"] in states.READY_STATES for meta in self._metas())

    def successful(self) -> bool:
        return all(meta["state"] == states.SUCCESS for meta in self._metas())

    def failed(self) -> bool:
        """True when any task failed."""
        return any(meta["state"] == states.FAILURE for meta in self._metas())

    def waiting(self) -> bool:
        return not self.ready()

    def completed_count(self) -> int:
        """How many tasks succeeded."""
        return sum(meta["state"] == states.SUCCESS for meta in self._metas())

    def get(self, timeout: float | None = None, propagate: bool = True,
            interval: float = 0.1) -> list:
        """Wait for every task; return their results in order (one store read per poll).

        The first failure (in group order) is raised when `propagate`; otherwise failures
        appear in the list as exception objects.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = min(0.002, interval)
        while True:
            metas = self._metas()
            unready = [m for m in metas if m["state"] not in states.READY_STATES]
            if not unready:
                break
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise TimeoutError(
                    f"group {self.id}: {len(unready)} of {len(metas)} tasks still not ready "
                    f"after {timeout:g}s (first: {unready[0]['id']} {unready[0]['state']})",
                    "a worker consuming their queue may not be running",
                )
            pause = interval if deadline is None else min(interval, max(0.0, deadline - now))
            if unready[0]["state"] == states.PENDING:  # nothing stored yet: wait for it
                self.app.backend.store.wait_value(result_key(unready[0]["id"]), pause)
            else:
                time.sleep(min(delay, pause))
                delay = min(delay * 2, interval)
        values = []
        for meta in metas:
            if meta["state"] == states.SUCCESS:
                values.append(meta.get("result"))
                continue
            exc = exception_from_meta(meta)
            if propagate:
                raise exc
            values.append(exc)
        return values

    join = get

    def revoke(self, terminate: bool = False, signal: str | int = "TERM",
               reply: bool = False, timeout: float | None = None) -> Any:
        """Revoke every task of the group, through the app's remote control (durable: nodes
        started later refuse them too)."""
        return self.app.control.revoke([r.id for r in self.results], terminate=terminate,
                                       signal=signal, reply=reply, timeout=timeout)

    def forget(self) -> None:
        self.app.backend.forget([r.id for r in self.results])
        self.app.backend.store.delete_values([GROUP_PREFIX + self.id])

    def save(self) -> GroupResult:
        """Store the member ids, so `GroupResult.restore(id, app)` finds the group again."""
        save_group(self.app, self.id, [r.id for r in self.results])
        return self

    @classmethod
    def restore(cls, group_id: str, app: Fleet | None = None) -> GroupResult | None:
        """The group saved under `group_id`, or None if unknown or expired (`app`: the
        current app when not given)."""
        app = app if app is not None else _current_app()
        ids = load_group(app, group_id)
        if ids is None:
            return None
        return cls(group_id, [AsyncResult(task_id, app=app) for task_id in ids], app=app)


def _current_app() -> Fleet:
    from fleet.engine.current import current_app

    return current_app()
