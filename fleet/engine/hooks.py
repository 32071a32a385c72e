"""Hooks: Celery's signals, by their names, for code that wants to run at a task's or a
node's moments (database connections, metrics, tracing). Public as `fleet.hooks`.

    from fleet import hooks

    @hooks.task_prerun.connect
    def started(sender=None, task_id=None, **kwargs): ...

    @hooks.task_success.connect(sender="proj.tasks.add")   # only for that task
    def added(sender=None, result=None, **kwargs): ...

A receiver is called with keywords only: `signal` (the hook), `sender`, and the hook's own
arguments (see `HOOKS`); it must accept `**kwargs`, since hooks may gain arguments. A
receiver connected with `sender=` runs only for that sender: the same object, an equal
string, or (for a task) the task's name. A receiver that raises is logged with its
traceback and skipped: it never fails the task, the send or the node.

Sending costs one attribute test while nobody is connected (`if hook.receivers:` at every
place that sends), so hooks on the per-task path are free until used. Receivers are kept
with strong references (unlike Celery's default): `disconnect` removes one; `weak=True`
keeps a weak reference instead (the receiver goes away with its last other reference).
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("fleet.hooks")

#: Every hook: name -> (where it runs, its arguments). The README's table says the same.
HOOKS: dict[str, tuple[str, str]] = {
    "before_task_publish": ("the process that sends the task, before it is put on the broker",
                            "sender=task name; body, exchange, routing_key, headers, "
                            "properties"),
    "after_task_publish": ("the process that sends the task, once it is on the broker",
                           "sender=task name; body, exchange, routing_key, headers, "
                           "properties"),
    "task_received": ("the node's main process, when it reserved the task",
                      "sender=the node; request"),
    "task_prerun": ("where the task runs (a pool child), just before it",
                    "sender=the task; task_id, task, args, kwargs"),
    "task_postrun": ("where the task runs, after it (whatever its outcome)",
                     "sender=the task; task_id, task, args, kwargs, retval, state"),
    "task_success": ("where the task runs, when it succeeded",
                     "sender=the task; result"),
    "task_failure": ("where the task runs, when it failed",
                     "sender=the task; task_id, exception, args, kwargs, traceback, einfo"),
    "task_retry": ("where the task runs, when it will be retried",
                   "sender=the task; request, reason, einfo"),
    "task_revoked": ("the node's main process, when a revoked, expired or terminated task "
                     "is settled", "sender=the task; request, terminated, signum, expired"),
    "task_rejected": ("the node's main process, when a message it cannot read goes to the "
                      "dead-letter queue", "sender=the node; message, reason"),
    "task_unknown": ("the node's main process, when a message names a task it does not have",
                     "sender=the node; name, id, message, exc"),
    "worker_init": ("the node's main process, as it starts (before its children)",
                    "sender=the node"),
    "worker_process_init": ("each pool child, once it is set up", "sender=None"),
    "worker_ready": ("the node's main process, once it consumes", "sender=the node"),
    "worker_shutting_down": ("the node's main process, when its shutdown begins",
                             "sender=the node name; sig, how, exitcode"),
    "worker_process_shutdown": ("each pool child, as it exits", "sender=None; pid, exitcode"),
    "beat_init": ("`fleet beat`, as it starts", "sender=the scheduler"),
    "beat_embedded_init": ("the node's main process, as `fleet worker -B` starts its beat",
                           "sender=the scheduler"),
    "setup_logging": ("every process that sets logging up (node, child, beat): a receiver "
                      "replaces fleet's own logging set-up",
                      "sender=None; loglevel, logfile, format, colorize"),
    "import_modules": ("a node or beat, before it imports the app's `include` and "
                       "autodiscovered modules", "sender=the app"),
}


@dataclass(frozen=True)
class _Receiver:
    key: tuple[Any, Any]
    sender: Any
    target: Callable[..., Any] | weakref.ref


class Hook:
    """One hook: `connect` receivers, and the engine `send`s to them."""

    def __init__(self, name: str, where: str, arguments: str):
        self.name = name
        self.where = where
        self.arguments = arguments
        self.__doc__ = f"Runs in {where}. Arguments: {arguments}."
        #: The receivers, replaced (never changed in place) on connect and disconnect, so a
        #: send in progress keeps the list it started with. Empty: nothing to do.
        self.receivers: tuple[_Receiver, ...] = ()

    def __repr__(self) -> str:
        return f"<hook {self.name}: {len(self.receivers)} receiver(s)>"

    def connect(self, receiver: Callable[..., Any] | None = None, *, sender: Any = None,
                weak: bool = False, dispatch_uid: Any = None) -> Any:
        """Connect `receiver`; as a decorator: `@hook.connect` or `@hook.connect(sender=x)`.

        The same receiver (or `dispatch_uid`) for the same sender is connected once.
        """
        if receiver is None:
            return lambda function: self.connect(function, sender=sender, weak=weak,
                                                 dispatch_uid=dispatch_uid)
        if not callable(receiver):
            raise TypeError(f"hooks.{self.name}.connect needs a callable, not "
                            f"{type(receiver).__name__}")
        key = (dispatch_uid if dispatch_uid is not None else _identity(receiver),
               _identity(sender))
        if any(known.key == key for known in self.receivers):
            return receiver
        target: Any = receiver
        if weak:
            target = weakref.WeakMethod(receiver) if hasattr(receiver, "__self__") else \
                weakref.ref(receiver)
        self.receivers = (*self.receivers, _Receiver(key, sender, target))
        return receiver

    def disconnect(self, receiver: Callable[..., Any] | None = None, *, sender: Any = None,
                   dispatch_uid: Any = None) -> bool:
        """Disconnect a receiver (or the one connected with `dispatch_uid`); False if it was
        not connected."""
        key = (dispatch_uid if dispatch_uid is not None else _identity(receiver),
               _identity(sender))
        kept = tuple(known for known in self.receivers if known.key != key)
        found = len(kept) != len(self.receivers)
        self.receivers = kept
        return found

    def send(self, sender: Any = None, **arguments: Any) -> list[tuple[Any, Any]]:
        """Call every receiver for `sender`; returns [(receiver, its return value or the
        exception it raised)]. A receiver that raises is logged, never re-raised."""
        responses: list[tuple[Any, Any]] = []
        for known in self.receivers:
            if known.sender is not None and not _matches(known.sender, sender):
                continue
            receiver = known.target
            if isinstance(receiver, weakref.ref):
                receiver = receiver()
                if receiver is None:  # its owner is gone: forget it
                    self.receivers = tuple(r for r in self.receivers if r is not known)
                    continue
            try:
                responses.append((receiver, receiver(signal=self, sender=sender, **arguments)))
            except Exception as exc:
                log.exception("hooks.%s: receiver %s failed (ignored)", self.name,
                              getattr(receiver, "__qualname__", receiver))
                responses.append((receiver, exc))
        return responses


def _identity(obj: Any) -> Any:
    """What tells receivers and senders apart: a string is itself, a bound method its
    function and object, anything else its id."""
    if obj is None or isinstance(obj, str):
        return obj
    if hasattr(obj, "__self__") and hasattr(obj, "__func__"):
        return (id(obj.__self__), id(obj.__func__))
    return id(obj)


def _matches(expected: Any, sender: Any) -> bool:
    if expected is sender:
        return True
    if isinstance(expected, str):
        return expected == sender or expected == getattr(sender, "name", None)
    return False


before_task_publish = Hook("before_task_publish", *HOOKS["before_task_publish"])
after_task_publish = Hook("after_task_publish", *HOOKS["after_task_publish"])
task_received = Hook("task_received", *HOOKS["task_received"])
task_prerun = Hook("task_prerun", *HOOKS["task_prerun"])
task_postrun = Hook("task_postrun", *HOOKS["task_postrun"])
task_success = Hook("task_success", *HOOKS["task_success"])
task_failure = Hook("task_failure", *HOOKS["task_failure"])
task_retry = Hook("task_retry", *HOOKS["task_retry"])
task_revoked = Hook("task_revoked", *HOOKS["task_revoked"])
task_rejected = Hook("task_rejected", *HOOKS["task_rejected"])
task_unknown = Hook("task_unknown", *HOOKS["task_unknown"])
worker_init = Hook("worker_init", *HOOKS["worker_init"])
worker_process_init = Hook("worker_process_init", *HOOKS["worker_process_init"])
worker_ready = Hook("worker_ready", *HOOKS["worker_ready"])
worker_shutting_down = Hook("worker_shutting_down", *HOOKS["worker_shutting_down"])
worker_process_shutdown = Hook("worker_process_shutdown", *HOOKS["worker_process_shutdown"])
beat_init = Hook("beat_init", *HOOKS["beat_init"])
beat_embedded_init = Hook("beat_embedded_init", *HOOKS["beat_embedded_init"])
setup_logging = Hook("setup_logging", *HOOKS["setup_logging"])
import_modules = Hook("import_modules", *HOOKS["import_modules"])

__all__ = [
    "HOOKS",
    "Hook",
    "after_task_publish",
    "beat_embedded_init",
    "beat_init",
    "before_task_publish",
    "import_modules",
    "setup_logging",
    "task_failure",
    "task_postrun",
    "task_prerun",
    "task_received",
    "task_rejected",
    "task_retry",
    "task_revoked",
    "task_success",
    "task_unknown",
    "worker_init",
    "worker_process_init",
    "worker_process_shutdown",
    "worker_ready",
    "worker_shutting_down",
]
