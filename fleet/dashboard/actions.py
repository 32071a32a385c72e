"""What the dashboard's buttons do: remote control through `app.control`, purge, re-send.

Each action returns a short JSON-able report, or raises `ActionError` with the HTTP status
and a one-line message for the operator. The remote commands and their argument checks come
from the one registry (fleet.engine.control) through `app.control.broadcast`, exactly as
`fleet control` sends them.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fleet.dashboard.views import resend_problem
from fleet.operator_errors import FleetError, UsageError

if TYPE_CHECKING:
    from fleet.dashboard.history import History
    from fleet.engine.app import Fleet

log = logging.getLogger("fleet.dashboard")

#: The control commands a node page offers.
NODE_COMMANDS = ("rate_limit", "time_limit", "pool_grow", "pool_shrink", "autoscale",
                 "add_consumer", "cancel_consumer", "pool_restart", "shutdown")


class ActionError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _reply_of(replies: Any, node: str, timeout: float) -> dict[str, Any]:
    if node not in replies:
        known = {seen.name: seen for seen in replies.known}
        if node not in known:
            raise ActionError(404, f"node {node} is not known to the broker")
        raise ActionError(504, f"{node} did not reply within {timeout:g}s (last heartbeat "
                               f"{known[node].age:.1f}s ago)")
    reply = replies[node]
    if "error" in reply:
        raise ActionError(409, f"{node} refused: {reply['error']}")
    return {"node": node, "ok": reply.get("ok")}


def node_command(app: Fleet, node: str, command: str, arguments: dict[str, Any],
                 timeout: float, user: str | None = None) -> dict[str, Any]:
    """Run control command `command` on `node` and return its reply."""
    if command not in NODE_COMMANDS:
        raise ActionError(404, f"unknown node action {command!r}; known: "
                               f"{', '.join(NODE_COMMANDS)}")
    try:
        replies = app.control.broadcast(command, arguments, [node], True, timeout,
                                        kind="control")
    except UsageError as exc:
        raise ActionError(400, exc.one_line()) from None
    log.info("dashboard: %s on %s %s (by %s)", command, node,
             " ".join(f"{key}={value}" for key, value in sorted(arguments.items())),
             user or "local user")
    return _reply_of(replies, node, timeout)


def revoke(app: Fleet, task_id: str, terminate: bool, signal: str, timeout: float,
           user: str | None = None) -> dict[str, Any]:
    """Revoke (durably) and, with `terminate`, kill the task where it runs."""
    try:
        replies = app.control.revoke(task_id, terminate=terminate, signal=signal or "TERM",
                                     reply=True, timeout=timeout)
    except UsageError as exc:
        raise ActionError(400, exc.one_line()) from None
    log.info("dashboard: %s %s%s (by %s)", "terminate" if terminate else "revoke", task_id,
             f" with SIG{signal}" if terminate else "", user or "local user")
    return {"task": task_id, "terminate": terminate, "stored": True,
            "replies": {node: reply.get("ok", reply.get("error"))
                        for node, reply in sorted(replies.items())}}


def resend(app: Fleet, history: History, task_id: str,
           user: str | None = None) -> dict[str, Any]:
    """Send a recorded task again with the same name, arguments and queue."""
    recorded = history.task(task_id)
    if recorded is None:
        raise ActionError(404, f"task {task_id} is not in the dashboard's history")
    problem = resend_problem(recorded)
    if problem is not None:
        raise ActionError(409, f"cannot send {task_id} again: {problem}")
    options = {"queue": recorded["queue"]} if recorded.get("queue") else {}
    args, kwargs = recorded.get("args") or [], recorded.get("kwargs") or {}
    try:
        result = app.send_task(recorded["name"], args, kwargs, **options)
    except FleetError as exc:
        raise ActionError(400, exc.one_line()) from None
    history.note_resent(task_id, result.id, recorded["name"], recorded.get("queue"), args,
                        kwargs)
    log.info("dashboard: sent %s[%s] again as %s (by %s)", recorded["name"], task_id,
             result.id, user or "local user")
    return {"task": task_id, "new_id": result.id}


def purge(app: Fleet, queue: str, confirm: str | None,
          user: str | None = None) -> dict[str, Any]:
    """Delete the waiting messages of one queue; `confirm` must repeat the queue's name."""
    if confirm != queue:
        raise ActionError(400, f"purging {queue} needs confirmation: send confirm="
                               f"{queue!r} (the page asks first)")
    known = {s.name: s for s in app.broker.queue_stats()}
    if queue not in known:
        raise ActionError(404, f"no queue named {queue}")
    removed = app.broker.purge([queue])
    log.warning("dashboard: purged %d message(s) from %s (by %s)", removed, queue,
                user or "local user")
    return {"queue": queue, "removed": removed, "reserved_left": known[queue].reserved}
