"""What a finished task sends next: callbacks, errbacks, chain continuations, chord bodies.

A task message carries its workflow in `callbacks` (documented in `fleet.engine.message`).
When the task has finished, `follow_up` turns that into a `Plan`: the messages to send and
the results to store. Who finishes the task carries the plan out:

* a pool child (the usual case): in `execute`, the messages become the outcome's `send`
  list, which the node puts in the same commit as the task's result and ack;
* the node's main process, for failures it decides itself (worker lost, hard time limit,
  revoked or expired before running) and for early-acked tasks it finds were running on a
  dead node: `attach` hooks `settled` and `lost` and adds the plan to the node's batch.

Chords count in the result store. Each header task, once it succeeded, stores its own result
(so it is readable before it is counted), claims `chord:<group>:member:<task id>` (so a
redelivered task never counts twice), then increments `chord:<group>:count`. The one that
reaches the header size claims `chord:<group>:fired` and sends the body with every header
result, in order. A failed header task claims `fired` instead and fails the chord: the body
(and whatever follows it) gets the header's error as its result, and the body's errbacks
are called. `add_value` and `incr` are atomic on every transport, so this holds with header
tasks finishing at the same moment on many nodes, and the body is sent at most once.

Errbacks are called as `errback(failed_task_id, error, *own_args)`, where `error` is
`{"task", "exc_type", "exc_module", "exc_message"}`; the traceback is in the failed task's
stored result. Immutable errbacks (`task.si(...)`) get only their own arguments.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from fleet.engine import message as codec
from fleet.engine import states
from fleet.engine.canvas import Plan, Signature, _revive
from fleet.engine.results import exception_meta, load_group

if TYPE_CHECKING:
    from fleet.engine.app import Fleet
    from fleet.engine.execute import Outcome
    from fleet.engine.message import TaskMessage
    from fleet.engine.worker import Job, Node

log = logging.getLogger("fleet.workflow")

FAILED_STATES = frozenset({states.FAILURE, states.REVOKED})


def follow_up(app: Fleet, msg: TaskMessage, meta: dict, meta_text: str | None = None) -> Plan:
    """The plan for a task that finished with `meta` (its stored result, decoded)."""
    plan = Plan()
    state = meta.get("state")
    if state == states.SUCCESS:
        _after_success(app, msg, meta, meta_text, plan)
    elif state in FAILED_STATES:
        _after_failure(app, msg, meta, plan)
    return plan


def _parent(msg: TaskMessage) -> dict:
    return {"parent_id": msg.id, "root_id": msg.root_id or msg.id}


def _after_success(app: Fleet, msg: TaskMessage, meta: dict, meta_text: str | None,
                   plan: Plan) -> None:
    callbacks, value, parent = msg.callbacks, meta.get("result"), _parent(msg)
    for data in callbacks.get("link", ()):
        _revive(data, app)._build(app, (value,), {}, [], plan, parent)
    rest = [_revive(data, app) for data in callbacks.get("chain", ())]
    if rest:
        rest[0]._build(app, (value,), {}, rest[1:], plan, parent)
    if callbacks.get("chord"):
        _count_chord_member(app, msg, callbacks["chord"], meta_text or codec.dumps(meta),
                            plan)


def error_info(msg: TaskMessage, meta: dict) -> dict:
    """What an errback is told about the failure."""
    return {"task": msg.task, "exc_type": meta.get("exc_type"),
            "exc_module": meta.get("exc_module"), "exc_message": meta.get("exc_message")}


def _after_failure(app: Fleet, msg: TaskMessage, meta: dict, plan: Plan) -> None:
    callbacks = msg.callbacks
    _call_errbacks(app, msg, meta, [_revive(d, app) for d in callbacks.get("link_error", ())],
                   plan)
    for data in callbacks.get("chain", ()):  # never runs: its results become this failure
        _fail_results(_revive(data, app), msg, meta, plan)
    info = callbacks.get("chord")
    if info and _claim_chord(app, info["group"], msg.id):
        _fail_chord(app, msg, meta, info, plan)


def _call_errbacks(app: Fleet, msg: TaskMessage, meta: dict, errbacks: list[Signature],
                   plan: Plan) -> None:
    error = error_info(msg, meta)
    for errback in errbacks:
        errback._build(app, (msg.id, error), {}, [], plan, _parent(msg))


def _fail_results(sig: Signature, msg: TaskMessage, meta: dict, plan: Plan) -> None:
    for task_id in sig.result_ids():
        plan.metas.append({**meta, "id": task_id, "task": None, "failed_upstream": msg.id})


def _fail_chord(app: Fleet, msg: TaskMessage, meta: dict, info: dict, plan: Plan) -> None:
    body = _revive(info["body"], app)
    log.error("Chord %s failed: header task %s[%s] %s: %s", info["group"], msg.task, msg.id,
              meta.get("state"), meta.get("exc_message"))
    _fail_results(body, msg, meta, plan)
    _call_errbacks(app, msg, meta, body.errbacks(), plan)


# -- chords -------------------------------------------------------------------------------------


def _keys(group_id: str) -> tuple[str, str, str]:
    base = f"chord:{group_id}:"
    return base + "member:", base + "count", base + "fired"


def _claim_chord(app: Fleet, group_id: str, task_id: str) -> bool:
    """True for exactly one caller per chord: the one that sends the body or fails it."""
    return app.result_store.add_value(_keys(group_id)[2], task_id, app.backend.ttl)


def _count_chord_member(app: Fleet, msg: TaskMessage, info: dict, meta_text: str,
                        plan: Plan) -> None:
    store, ttl = app.result_store, app.backend.ttl
    member, count, _ = _keys(info["group"])
    store.set_values([app.backend.store_encoded(msg.id, meta_text)])
    if not store.add_value(member + msg.id, "1", ttl):
        return  # counted before (this is a redelivery)
    if store.incr(count, 1, ttl) < info["size"] or not _claim_chord(app, info["group"], msg.id):
        return
    ids = load_group(app, info["group"])
    if ids is None:
        from fleet.exceptions import FleetError

        exc = FleetError(f"chord {info['group']}: its header's task list is gone from the "
                         "result store (expired?)")
        _fail_chord(app, msg, exception_meta(msg.id, states.FAILURE, exc, None), info, plan)
        return
    metas = app.backend.get_metas(ids)
    failed = next((m for m in metas if m["state"] != states.SUCCESS), None)
    if failed is not None:
        _fail_chord(app, msg, failed, info, plan)
        return
    body = _revive(info["body"], app)
    body._build(app, ([m.get("result") for m in metas],), {}, [], plan, _parent(msg))


# -- who carries the plan out -------------------------------------------------------------------


def add_to_outcome(app: Fleet, msg: TaskMessage, outcome: Outcome) -> Outcome:
    """In a pool child: compute the follow-ups of a finished task; messages go out with the
    node's commit (`outcome.send`), results are stored at once."""
    if outcome.meta is None or not msg.callbacks:
        return outcome
    try:
        plan = follow_up(app, msg, codec.loads(outcome.meta), outcome.meta)
        plan.store(app)
    except Exception:
        log.exception("Task %s[%s]: could not send what follows it in its workflow",
                      msg.task, msg.id)
        return outcome
    outcome.send.extend({"queue": m.queue, "body": m.encode(), "priority": m.priority,
                         "eta": m.eta} for m in plan.messages)
    return outcome


def attach(node: Node) -> None:
    """Follow up, in the node's main process, the failures it decides itself, and the
    tasks it finds lost on a dead node."""
    node.hooks["settled"].append(_on_settled)
    node.hooks["lost"].append(_on_lost)


def _on_settled(node: Node, job: Job, state: str, header: dict) -> None:
    meta = header.get("meta")
    if meta is not None and state in FAILED_STATES:  # (children followed up their own)
        _follow_up_in_node(node, job.message, meta)


def _on_lost(node: Node, msg: TaskMessage, meta: dict) -> None:
    _follow_up_in_node(node, msg, meta)


def _follow_up_in_node(node: Node, msg: TaskMessage, meta: dict) -> None:
    if not msg.callbacks:
        return
    from fleet.engine.transport.base import Outgoing

    plan = follow_up(node.app, msg, meta)
    for group_id, ids in plan.groups.items():  # (none on failure paths; kept for safety)
        from fleet.engine.results import save_group

        save_group(node.app, group_id, ids)
    node.batch.results.extend(node.backend.stored(m) for m in plan.metas)
    node.batch.puts.extend(Outgoing(m.id, m.queue, m.encode(), m.priority, m.eta)
                           for m in plan.messages)
