"""A node's events: worker events always, task events while `send_events` is on.

Worker events (worker-online, worker-heartbeat, worker-offline) are always sent; task events
(task-received, -started, -succeeded, -failed, -retried, -revoked, -rejected) only while the
node's `send_events` is on (`fleet worker -E`, `worker_send_task_events`, or
`fleet control enable_events`). The sender plugs into the node's hooks, batches the events
of one loop turn and publishes them as one broadcast from a loop timer right after the turn.
What an event looks like, and how clients listen, is `fleet.engine.events`.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import TYPE_CHECKING, Any

from fleet.engine import states
from fleet.engine.events import EVENTS_CHANNEL, FIELD_LIMIT, SETTLED_TYPES, clip, display_name

if TYPE_CHECKING:
    from fleet.engine.node.jobs import Job
    from fleet.engine.worker import Node

log = logging.getLogger("fleet.events")

IDLE = float("inf")


class EventSender:
    """A node's outgoing events: collected during a loop turn, published after it."""

    def __init__(self, node: Node):
        self.node = node
        self.pending: list[dict[str, Any]] = []
        self.timer = [IDLE, self.flush]  # an entry of node.timers: [due, callback]

    def send(self, event_type: str, **fields: Any) -> None:
        self.pending.append({"type": event_type, "node": self.node.name,
                             "timestamp": time.time(), **fields})
        self.timer[0] = 0.0  # due at once: published right after this turn

    def flush(self, now: float = 0.0) -> float:
        events, self.pending = self.pending, []
        broker = self.node.consumer.broker
        if events and broker is not None:
            try:
                broker.publish(EVENTS_CHANNEL, json.dumps(events, default=repr))
            except Exception as exc:  # events are best effort: never trouble the node
                log.warning("%s: could not send %d event(s): %s", self.node.name, len(events),
                            exc)
        return IDLE

    # -- worker events -------------------------------------------------------------------------

    def worker(self, event_type: str) -> None:
        node = self.node
        info = node.consumer.heartbeat_info()
        self.send(event_type, pid=os.getpid(), active=info["active"],
                  processed=info["processed"], loadavg=info["loadavg"],
                  freq=node.conf.worker_heartbeat_interval, concurrency=info["concurrency"],
                  queues=list(node.consumer.queues), state=node.state)
        if event_type != "worker-heartbeat":
            self.flush()  # online/offline go out at once (the node may be about to exit)

    # -- task events (node hooks) --------------------------------------------------------------

    def _enabled(self) -> bool:
        return bool(self.node.options.send_events)

    def on_received(self, node: Node, job: Job) -> None:
        if self._enabled():
            msg = job.message
            self.send("task-received", uuid=msg.id, name=display_name(msg.task, msg.options),
                      args=clip(msg.args),
                      kwargs=clip(msg.kwargs), eta=msg.eta, expires=msg.expires,
                      retries=msg.retries, queue=job.delivery.queue, root_id=msg.root_id,
                      parent_id=msg.parent_id, group_id=msg.group_id)

    def on_started(self, node: Node, job: Job) -> None:
        if self._enabled():
            msg = job.message
            self.send("task-started", uuid=msg.id, name=display_name(msg.task, msg.options),
                      pid=job.child.pid if job.child else None)

    def on_settled(self, node: Node, job: Job, state: str, header: dict) -> None:
        if not self._enabled():
            return
        msg = job.message
        fields: dict[str, Any] = {"uuid": msg.id, "name": display_name(msg.task, msg.options),
                                  "runtime": header.get("runtime")}
        meta = header.get("meta") or {}
        summary = header.get("summary") or meta.get("exc_message")
        if state == states.SUCCESS:
            fields["result"] = summary
        else:
            fields["exception"] = summary or \
                f"{meta.get('exc_type', state)}: {meta.get('exc_message', '')}".strip()
        self.send(SETTLED_TYPES.get(state, f"task-{state.lower()}"), **fields)

    def on_rejected(self, node: Node, delivery: Any, reason: str) -> None:
        if self._enabled():
            self.send("task-rejected", uuid=delivery.id, queue=delivery.queue,
                      reason=reason[:FIELD_LIMIT])


def attach(node: Node) -> EventSender:
    """Wire events into `node`'s hooks and timers; returns the sender."""
    sender = EventSender(node)
    node.timers.append(sender.timer)
    node.hooks["ready"].append(lambda n: sender.worker("worker-online"))
    node.hooks["heartbeat"].append(lambda n: sender.worker("worker-heartbeat"))
    node.hooks["shutdown"].append(lambda n, how: sender.worker("worker-offline"))
    node.hooks["received"].append(sender.on_received)
    node.hooks["started"].append(sender.on_started)
    node.hooks["settled"].append(sender.on_settled)
    node.hooks["rejected"].append(sender.on_rejected)
    return sender
