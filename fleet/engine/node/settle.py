"""Settling jobs: what a finished job puts in the node's next commit.

A child's outcome becomes, in the consumer's batch: the task's result (unless ignored), a
retry message (RETRY), the follow-up messages of its workflow, and its ack, all committed
in one round trip (`settle`). Jobs the node settles without an outcome from a child
(revoked or expired before they ran, a hard time limit, a cold shutdown) get a result the
node writes itself (`finish`, `fail`). A job whose child died (`lost`) goes back to its
queue when it is acks-late and rejected on worker lost (at most
worker_lost_max_redeliveries times), and fails otherwise. Every settled job is announced on
the node's "settled" hook (events, workflow follow-ups).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from fleet.engine import message as codec
from fleet.engine import states
from fleet.engine.node.jobs import first
from fleet.engine.results import exception_meta
from fleet.engine.transport.base import Outgoing
from fleet.exceptions import TaskRevokedError, WorkerLostError
from fleet.signals import describe_wait_status, lost_reason, signal_name

if TYPE_CHECKING:
    from fleet.engine.message import TaskMessage
    from fleet.engine.node.jobs import Job
    from fleet.engine.worker import Node

log = logging.getLogger("fleet.worker")

#: How often a task lost with its child was sent back to its queue (reject_on_worker_lost).
REDELIVERY_HEADER = codec.REDELIVERY_HEADER


class Settler:
    """Turns finished jobs into results, acks and messages in the consumer's batch."""

    def __init__(self, node: Node):
        self.node = node
        self.name = node.name
        self.conf = node.conf
        self.processed = node.jobs.processed
        self.consumer = node.consumer

    def settle(self, job: Job, header: dict, payload: bytes) -> None:
        """A child's outcome of `job`: log it, and commit its result, retry, follow-ups, ack."""
        state, runtime = header["state"], header["runtime"]
        msg = job.message
        self.processed[msg.task] += 1
        if header.get("terminated") or (job.terminate and state == states.REVOKED):
            log.warning("Task %s terminated after %s", job.label, format_runtime(runtime))
        elif state == states.SUCCESS:
            log.info("Task %s succeeded in %s: %s", job.label, format_runtime(runtime),
                     header["summary"])
        elif state == states.RETRY:
            log.info("Task %s %s", job.label, header["summary"])
            self._put_retry(job, header["retry"])
        else:
            log.error("Task %s failed in %s: %s", job.label, format_runtime(runtime),
                      header["summary"])
        consumer = self.consumer
        batch = consumer.batch
        if not job.ignore_result and payload:
            batch.results.append(consumer.backend.store_encoded(msg.id, payload.decode()))
        for item in header.get("send", ()):  # follow-up messages (workflow callbacks)
            batch.puts.append(Outgoing(codec.new_id(), item["queue"], item["body"],
                                       item.get("priority", 0), item.get("eta")))
        batch.acks.append(job.delivery.id)
        self.node.emit("settled", job, state, header)

    def _put_retry(self, job: Job, retry: dict) -> None:
        msg = job.message
        again = codec.TaskMessage(**{**_message_fields(msg), "retries": msg.retries + 1,
                                     "eta": retry.get("eta"),
                                     "args": retry.get("args", msg.args),
                                     "kwargs": retry.get("kwargs", msg.kwargs)})
        self.consumer.batch.puts.append(Outgoing(codec.new_id(), job.delivery.queue,
                                                 again.encode(), job.delivery.priority,
                                                 again.eta))

    def finish(self, job: Job, meta: dict) -> None:
        """Settle a job without an outcome from a child (revoked, lost, time limit)."""
        if not job.ignore_result or meta["state"] != states.SUCCESS:
            self.consumer.store_meta(meta)
        self.consumer.batch.acks.append(job.delivery.id)
        self.node.emit("settled", job, meta["state"], {"id": meta["id"], "state": meta["state"],
                                                       "meta": meta})

    def fail(self, job: Job, exc: BaseException, state: str = states.FAILURE,
             **extra: Any) -> None:
        """Settle a job the node stopped or refused, with `exc` as its result."""
        msg = job.message
        self.finish(job, exception_meta(msg.id, state, exc, None, task=msg.task,
                                        node=self.name, **extra))

    def lost(self, job: Job, pid: int, status: int) -> None:
        """`job`'s child (`pid`) died with wait `status` before it sent an outcome."""
        how = describe_wait_status(status)
        msg = job.message
        if job.terminate is not None:
            log.warning("Task %s terminated (%s)", job.label, how)
            self.fail(job, TaskRevokedError(f"task {msg.id} was terminated with signal "
                                            f"{signal_name(job.terminate)}"), states.REVOKED)
            return
        redeliveries = int(msg.headers.get(REDELIVERY_HEADER, 0))
        limit = self.conf.worker_lost_max_redeliveries
        requeue = job.acks_late and first(msg.options.get("reject_on_worker_lost"),
                                          job.task.reject_on_worker_lost)
        if requeue and redeliveries < limit:
            log.error("Task %s lost: its process %s. Acks-late task rejected on worker lost: "
                      "sent back to queue %r (redelivery %d of at most %d)", job.label, how,
                      job.delivery.queue, redeliveries + 1, limit)
            self._redeliver(job, redeliveries + 1)
            return
        detail = f"{lost_reason(status)}: the child process running it (pid {pid}) died"
        if requeue:
            detail += f"; it was already redelivered {redeliveries} times: giving up"
        log.error("Task %s lost: %s", job.label, detail)
        self.fail(job, WorkerLostError(f"worker lost: {detail}"))

    def _redeliver(self, job: Job, count: int) -> None:
        msg = job.message
        again = codec.TaskMessage(**{**_message_fields(msg), "headers": {
            **msg.headers, REDELIVERY_HEADER: count}})
        batch = self.consumer.batch
        batch.puts.append(Outgoing(codec.new_id(), job.delivery.queue, again.encode(),
                                   job.delivery.priority))
        batch.acks.append(job.delivery.id)


def format_runtime(seconds: float) -> str:
    """0.000042 -> '42us', 0.0123 -> '12.3ms', 4.5 -> '4.50s'."""
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f}us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f}ms"
    return f"{seconds:.2f}s"


def _message_fields(msg: TaskMessage) -> dict[str, Any]:
    return {name: getattr(msg, name) for name in msg.__slots__}
