"""The node's main-process hooks (`fleet.hooks`), sent from the node's own extension points.

    node "received"          -> hooks.task_received
    node "settled", REVOKED  -> hooks.task_revoked (revoked, expired or terminated)
    node "rejected"          -> hooks.task_unknown (a task this node does not have), else
                                hooks.task_rejected (a message it cannot read)
    node "ready"             -> hooks.worker_ready
    node "shutdown"          -> hooks.worker_shutting_down

(worker_init is sent by `Node.start`; the hooks of a task's own run are sent where it runs,
see `fleet.engine.lifecycle`; a child's own hooks by `fleet.engine.pool`.) Each call tests
the hook's receivers first, so a hook nobody connected costs one test per event.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from fleet.engine import hooks, states
from fleet.engine import message as codec
from fleet.engine.node.jobs import COLD
from fleet.exceptions import MessageDecodeError, NotRegistered

if TYPE_CHECKING:
    from fleet.engine.node.jobs import Job
    from fleet.engine.transport.base import Delivery
    from fleet.engine.worker import Node


def attach(node: Node) -> None:
    """Send the main-process hooks from `node`'s extension points."""
    node.hooks["received"].append(_received)
    node.hooks["settled"].append(_settled)
    node.hooks["rejected"].append(_rejected)
    node.hooks["ready"].append(_ready)
    node.hooks["shutdown"].append(_shutting_down)


def _request(node: Node, job: Job) -> Any:
    from fleet.engine.execute import request_for

    delivery = job.delivery
    return request_for(job.message, node.name, {"queue": delivery.queue,
                                                "priority": delivery.priority,
                                                "redelivered": delivery.redelivered})


def _received(node: Node, job: Job) -> None:
    if hooks.task_received.receivers:
        hooks.task_received.send(sender=node, request=_request(node, job))


def _settled(node: Node, job: Job, state: str, header: dict) -> None:
    if state != states.REVOKED or not hooks.task_revoked.receivers:
        return
    meta = header.get("meta") or {}
    terminated = bool(header.get("terminated")) or job.terminate is not None
    hooks.task_revoked.send(sender=job.task, request=_request(node, job),
                            terminated=terminated, signum=job.terminate,
                            expired=meta.get("reason") == "expired")


def _rejected(node: Node, delivery: Delivery, reason: str) -> None:
    if not (hooks.task_unknown.receivers or hooks.task_rejected.receivers):
        return
    try:
        msg = codec.decode(delivery.body)
    except MessageDecodeError:
        msg = None
    if msg is not None and msg.task not in node.app.tasks:
        hooks.task_unknown.send(sender=node, name=msg.task, id=msg.id, message=delivery,
                                exc=NotRegistered(f"unknown task {msg.task!r}"))
    else:
        hooks.task_rejected.send(sender=node, message=delivery, reason=reason)


def _ready(node: Node) -> None:
    if hooks.worker_ready.receivers:
        hooks.worker_ready.send(sender=node)


def _shutting_down(node: Node, how: str) -> None:
    if hooks.worker_shutting_down.receivers:
        why = node.shutdown.reason
        sig = f"SIG{why}" if why in ("TERM", "INT", "QUIT", "HUP") else why or None
        hooks.worker_shutting_down.send(sender=node.name, sig=sig,
                                        how="Cold" if how == COLD else "Warm",
                                        exitcode=node.exit_code)
