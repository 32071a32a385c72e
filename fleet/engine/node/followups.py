"""Workflow follow-ups the node's main process carries out itself.

A child follows up the tasks it ran (`fleet.engine.execute.add_follow_ups`); the main
process follows up what no child finished: failures it decides itself (worker lost, hard
time limit, revoked or expired before running, dead-lettered as unknown), early-acked tasks
it finds were running on a dead node, and follow-ups a child could not finish because the
result store failed. The plans (`fleet.engine.workflow.follow_up`) go into the node's next
commit, in order; while the result store fails they are retried with backoff on the node's
timer, never blocking its loop, so a workflow never waits forever.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from fleet.engine import message as codec
from fleet.engine import states
from fleet.engine.results import exception_meta, save_group
from fleet.engine.transport.base import Outgoing
from fleet.engine.workflow import FAILED_STATES, follow_up, is_transient
from fleet.exceptions import MessageDecodeError, NotRegistered

if TYPE_CHECKING:
    from fleet.engine.message import TaskMessage
    from fleet.engine.node.jobs import Job
    from fleet.engine.worker import Node

log = logging.getLogger("fleet.workflow")

IDLE = float("inf")


def attach(node: Node) -> FollowUps:
    """Follow up, in the node's main process, the failures it decides itself, the tasks it
    finds lost on a dead node, and the follow-ups its children could not finish."""
    follow_ups = FollowUps(node)
    node.hooks["settled"].append(follow_ups.on_settled)
    node.hooks["lost"].append(follow_ups.on_lost)
    node.hooks["rejected"].append(follow_ups.on_rejected)
    node.timers.append(follow_ups.timer)
    return follow_ups


class FollowUps:
    """The node's own follow-ups, carried out into its commit batch, in order; retried with
    backoff (on the node's timer, never blocking its loop) while the result store fails."""

    def __init__(self, node: Node):
        self.node = node
        self.waiting: list[tuple[TaskMessage, dict, str | None, str]] = []
        self.failures = 0
        self.timer: list = [IDLE, self.retry]  # an entry of node.timers: [due, callback]

    def on_settled(self, node: Node, job: Job, state: str, header: dict) -> None:
        handed = header.get("follow_up")
        if handed is not None:  # a child could not finish its follow-up
            self.add(job.message, codec.loads(handed["meta"]), handed["meta"], handed["token"])
            return
        meta = header.get("meta")
        if meta is not None and state in FAILED_STATES:  # (children followed up their own)
            self.add(job.message, meta)

    def on_lost(self, node: Node, msg: TaskMessage, meta: dict) -> None:
        self.add(msg, meta)

    def on_rejected(self, node: Node, delivery: Any, reason: str) -> None:
        """A dead-lettered task (unknown to the node) failed: so does what follows it."""
        try:
            msg = codec.decode(delivery.body)
        except MessageDecodeError:
            return  # an undecodable message carries no workflow we could read
        exc = NotRegistered(f"task {msg.task!r} was moved to the dead-letter queue: {reason}")
        self.add(msg, exception_meta(msg.id, states.FAILURE, exc, None, task=msg.task,
                                     node=node.name))

    def add(self, msg: TaskMessage, meta: dict, meta_text: str | None = None,
            token: str | None = None) -> None:
        if not msg.callbacks:
            return
        self.waiting.append((msg, meta, meta_text, token or uuid.uuid4().hex))
        if len(self.waiting) == 1:  # else a retry is scheduled already: keep the order
            self.timer[0] = self.retry(time.monotonic())

    def retry(self, now: float) -> float:
        """Carry out what waits, oldest first; when the next try is due (IDLE: nothing)."""
        while self.waiting:
            msg, meta, meta_text, token = self.waiting[0]
            try:
                self._carry_out(msg, meta, meta_text, token)
            except Exception as exc:
                if not is_transient(self.node.app, exc):
                    log.exception("%s: could not follow up %s[%s] in its workflow",
                                  self.node.name, msg.task, msg.id)
                    self.waiting.pop(0)
                    continue
                return self._back_off(now, exc)
            self.waiting.pop(0)
        self.failures = 0
        return IDLE

    def _back_off(self, now: float, exc: BaseException) -> float:
        conf = self.node.conf
        self.failures += 1
        delay = min(conf.broker_connection_retry_max_delay,
                    conf.broker_connection_retry_delay * 2 ** min(self.failures - 1, 16))
        log.error("%s: the result store failed while following up %d workflow task(s) "
                  "(%s: %s); retrying in %.1fs", self.node.name, len(self.waiting),
                  type(exc).__name__, exc, delay)
        return now + delay

    def _carry_out(self, msg: TaskMessage, meta: dict, meta_text: str | None,
                   token: str) -> None:
        node = self.node
        plan = follow_up(node.app, msg, meta, meta_text, token)
        for group_id, ids in plan.groups.items():  # before the messages that need them
            save_group(node.app, group_id, ids)
        consumer = node.consumer
        consumer.batch.results.extend(consumer.backend.stored(m) for m in plan.metas)
        consumer.batch.puts.extend(Outgoing(m.id, m.queue, m.encode(), m.priority, m.eta)
                                   for m in plan.messages)
