"""Run one task in this process and describe what happened, ready for the result store.

Used by pool children (and by tests directly). Knows nothing about pipes or brokers: it takes
a message, returns an `Outcome` whose `meta` is the JSON text to store as the result. A task
that is part of a workflow gets its follow-up messages in the outcome (`add_follow_ups`),
computed by `fleet.engine.workflow`.
"""

from __future__ import annotations

import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fleet.engine import lifecycle, states
from fleet.engine import message as codec
from fleet.engine.request import Request, _current
from fleet.engine.results import exception_meta, format_exception, success_meta
from fleet.engine.workflow import follow_up, is_transient
from fleet.exceptions import EncodeError, Retry, SoftTimeLimitExceeded, Terminated
from fleet.operator_errors import FleetError

if TYPE_CHECKING:
    from fleet.engine.app import Fleet
    from fleet.engine.message import TaskMessage
    from fleet.engine.task import Task

log = logging.getLogger("fleet.execute")

SUMMARY_LIMIT = 200


@dataclass
class Outcome:
    """What running a task produced. `meta` is the encoded result (None: nothing to store)."""

    id: str
    state: str
    runtime: float
    summary: str  #: short text for the log line: the return value's repr or "Type: message"
    meta: str | None = None
    retry: dict[str, Any] = field(default_factory=dict)  #: eta, args, kwargs for a retry
    terminated: bool = False
    #: Messages to put when the node settles this task, in the same commit as its result
    #: and ack: [{"queue", "body", "priority", "eta"}] (workflow callbacks use this).
    send: list[dict[str, Any]] = field(default_factory=list)
    #: A workflow follow-up the child could not finish (the result store failed), for the
    #: node to carry out: {"token", "meta"} (see `add_follow_ups`).
    follow_up: dict[str, Any] | None = None

    def header(self) -> dict:
        header = {"id": self.id, "state": self.state, "runtime": self.runtime,
                  "summary": self.summary}
        if self.retry:
            header["retry"] = self.retry
        if self.terminated:
            header["terminated"] = True
        if self.send:
            header["send"] = self.send
        if self.follow_up:
            header["follow_up"] = self.follow_up
        return header


def request_for(msg: TaskMessage, node: str, delivery_info: dict,
                events: bool = False) -> Request:
    return Request(
        id=msg.id, task=msg.task, args=msg.args, kwargs=msg.kwargs, retries=msg.retries,
        eta=msg.eta, expires=msg.expires, root_id=msg.root_id, parent_id=msg.parent_id,
        group_id=msg.group_id, headers=msg.headers, callbacks=msg.callbacks, hostname=node,
        delivery_info=delivery_info, options=msg.options, send_events=events,
    )


def execute(app: Fleet, msg: TaskMessage, node: str, delivery_info: dict,
            events: bool = False) -> Outcome:
    """Run the task of `msg`; never raises (except to let the process die on KILL).

    A task that is part of a workflow (callbacks, chain, chord) gets its follow-up messages
    in the outcome's `send` (see `add_follow_ups`). `events`: the node sends task events
    (so `update_state` sends one too).
    """
    outcome = _execute(app, msg, node, delivery_info, events)
    if not msg.callbacks:
        return outcome
    if outcome.terminated:
        # Handed to the node, which alone knows why it stopped the task: after a hard time
        # limit it has settled it as TimeLimitExceeded already and ignores this outcome.
        outcome.follow_up = {"token": uuid.uuid4().hex, "meta": outcome.meta}
        return outcome
    return add_follow_ups(app, msg, outcome)


def _execute(app: Fleet, msg: TaskMessage, node: str, delivery_info: dict,
             events: bool) -> Outcome:
    task = app.tasks[msg.task]
    request = request_for(msg, node, delivery_info, events)
    extra = {"task": msg.task, "node": node, "retries": msg.retries}
    _current.append((task, request))
    outcome, value = None, None
    try:
        outcome, value = _run(task, request, msg, extra)
        return outcome
    finally:
        if outcome is not None:
            lifecycle.finished(task, request, outcome.state, value)
        _current.pop()


def _run(task: Task, request: Request, msg: TaskMessage, extra: dict) -> tuple[Outcome, Any]:
    """Run the task: its outcome, and its return value (or the exception it raised)."""
    started = time.perf_counter()
    try:
        lifecycle.prerun(task, request)
        started = time.perf_counter()
        value = task.run(*msg.args, **msg.kwargs)
        outcome = _success(msg.id, value, time.perf_counter() - started, extra)
        if outcome.state != states.SUCCESS:  # its value cannot be stored (JSON)
            return outcome, EncodeError(outcome.summary)
        return outcome, value
    except Retry as signal:
        return _retry(msg, signal, time.perf_counter() - started, extra), signal.exc or signal
    except Terminated as exc:
        outcome = _failure(msg.id, states.REVOKED, exc, time.perf_counter() - started, extra)
        outcome.terminated = True
        return outcome, exc
    except BaseException as exc:  # the task's own failure, whatever it is
        runtime = time.perf_counter() - started
        if task.autoretry_for and isinstance(exc, task.autoretry_for) and \
                not isinstance(exc, SoftTimeLimitExceeded):
            limit = task.max_retries
            if limit is None or msg.retries < limit:
                when = time.time() + task.backoff_delay(msg.retries)
                return _retry(msg, Retry(exc=exc, when=when), runtime, extra), exc
        return _failure(msg.id, states.FAILURE, exc, runtime, extra), exc


def _success(task_id: str, value: Any, runtime: float, extra: dict) -> Outcome:
    meta = success_meta(task_id, value, **extra)
    try:
        encoded = codec.dumps(meta)
    except EncodeError:
        exc = EncodeError(f"the task returned {type(value).__name__} {_clip(repr(value))}, "
                          "which cannot be encoded as JSON",
                          "return numbers, strings, booleans, None, lists or dicts")
        return _failure(task_id, states.FAILURE, exc, runtime, extra)
    return Outcome(task_id, states.SUCCESS, runtime, _clip(repr(value)), encoded)


def _failure(task_id: str, state: str, exc: BaseException, runtime: float,
             extra: dict) -> Outcome:
    meta = exception_meta(task_id, state, exc, format_task_exception(exc), **extra)
    return Outcome(task_id, state, runtime, describe_exception(exc), codec.dumps(meta))


def _retry(msg: TaskMessage, signal: Retry, runtime: float, extra: dict) -> Outcome:
    cause = signal.exc or signal
    meta = exception_meta(msg.id, states.RETRY, cause, format_task_exception(cause), **extra)
    retry = {"eta": signal.when}
    for key, attr in (("args", "args_override"), ("kwargs", "kwargs_override")):
        value = getattr(signal, attr, None)
        if value is not None:
            retry[key] = list(value) if key == "args" else dict(value)
    try:
        codec.dumps(retry)
    except EncodeError as exc:
        return _failure(msg.id, states.FAILURE, exc, runtime, extra)
    summary = f"retry in {max(0.0, (signal.when or time.time()) - time.time()):.1f}s: " \
              f"{describe_exception(cause)}"
    return Outcome(msg.id, states.RETRY, runtime, summary, codec.dumps(meta), retry=retry)


def add_follow_ups(app: Fleet, msg: TaskMessage, outcome: Outcome) -> Outcome:
    """In a pool child: compute the follow-ups of a finished task; messages go out with the
    node's commit (`outcome.send`), results are stored at once.

    Never leaves a workflow waiting forever: when the result store fails (a broker error),
    the follow-up is handed to the node (`outcome.follow_up`), which retries it until the
    store is back; any other error fails the task with that error, and the node follows
    that failure up (the rest of the chain fails, errbacks run, a chord fails).
    """
    if outcome.meta is None or not msg.callbacks:
        return outcome
    token = uuid.uuid4().hex
    try:
        plan = follow_up(app, msg, codec.loads(outcome.meta), outcome.meta, token)
        plan.store(app)
    except Exception as exc:
        if is_transient(app, exc):
            log.warning("Task %s[%s]: the result store failed while following it up in its "
                        "workflow (%s: %s); the node retries that", msg.task, msg.id,
                        type(exc).__name__, exc)
        else:
            log.exception("Task %s[%s]: could not follow it up in its workflow: marked failed",
                          msg.task, msg.id)
            outcome = _workflow_failure(msg, outcome, exc)
        outcome.follow_up = {"token": token, "meta": outcome.meta}
        return outcome
    outcome.send.extend({"queue": m.queue, "body": m.encode(), "priority": m.priority,
                         "eta": m.eta} for m in plan.messages)
    return outcome


def _workflow_failure(msg: TaskMessage, outcome: Outcome, exc: Exception) -> Outcome:
    error = FleetError(f"the task ran ({outcome.state}) but what follows it in its workflow "
                       f"could not be sent: {type(exc).__name__}: {exc}")
    failed = _failure(msg.id, states.FAILURE, error, outcome.runtime, {"task": msg.task})
    failed.send, failed.retry = [], {}
    return failed


_OWN_FRAMES = (os.sep + os.path.join("fleet", "engine", "execute.py"),
               os.sep + os.path.join("fleet", "engine", "task.py"))


def format_task_exception(exc: BaseException) -> str:
    """The traceback from the task's own code on: fleet's calling frames say nothing."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None and \
            tb.tb_frame.f_code.co_filename.endswith(_OWN_FRAMES):
        tb = tb.tb_next
    return format_exception(exc.with_traceback(tb))


def describe_exception(exc: BaseException) -> str:
    text = str(exc)
    return _clip(f"{type(exc).__name__}: {text}" if text else type(exc).__name__)


def _clip(text: str) -> str:
    return text if len(text) <= SUMMARY_LIMIT else text[:SUMMARY_LIMIT - 3] + "..."
