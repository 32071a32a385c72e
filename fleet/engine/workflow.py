"""What a finished task sends next: callbacks, errbacks, chain continuations, chord bodies.

A task message carries its workflow in `callbacks` (documented in `fleet.engine.message`).
When the task has finished, `follow_up` turns that into a `Plan`: the messages to send and
the results to store. This module only computes plans (it is the client side: it never
imports the node). Who finishes the task carries the plan out:

* a pool child (the usual case): `fleet.engine.execute.add_follow_ups` puts the messages in
  the outcome's `send` list, which the node puts in the same commit as the task's result
  and ack;
* the node's main process, for failures it decides itself (worker lost, hard time limit,
  revoked or expired before running, dead-lettered as unknown), for early-acked tasks it
  finds were running on a dead node, and for follow-ups a child could not finish because
  the result store failed: `fleet.engine.node.followups` adds the plan to the node's batch,
  retrying with backoff while the store fails, so a workflow never waits forever.

Chords count in the result store. Each header task, once it succeeded, stores its own result
(so it is readable before it is counted), claims `chord:<group>:member:<task id>` (so a
redelivered task never counts twice), then increments `chord:<group>:count`. Claims hold
the follow-up's token, so a follow-up repeated after a broker error finds its own claim and
goes on instead of skipping the count (a broker error right after the increment, before the
member records its count, may still count it twice). The one that
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
import uuid
from typing import TYPE_CHECKING

from fleet.engine import message as codec
from fleet.engine import states
from fleet.engine.canvas import Plan, Signature, _revive
from fleet.engine.results import exception_meta, load_group
from fleet.engine.transport.base import StoredResult
from fleet.exceptions import BrokerUnavailable
from fleet.operator_errors import FleetError

if TYPE_CHECKING:
    from fleet.engine.app import Fleet
    from fleet.engine.message import TaskMessage

log = logging.getLogger("fleet.workflow")

FAILED_STATES = frozenset({states.FAILURE, states.REVOKED})


def follow_up(app: Fleet, msg: TaskMessage, meta: dict, meta_text: str | None = None,
              token: str | None = None) -> Plan:
    """The plan for a task that finished with `meta` (its stored result, decoded).

    `token` names this follow-up: an attempt repeated with the same token (after a broker
    error) reclaims the chord keys its earlier attempt claimed instead of skipping them.
    """
    plan = Plan()
    state = meta.get("state")
    token = token or uuid.uuid4().hex
    if state == states.SUCCESS:
        _after_success(app, msg, meta, meta_text, plan, token)
    elif state in FAILED_STATES:
        _after_failure(app, msg, meta, plan, token)
    return plan


def _parent(msg: TaskMessage) -> dict:
    return {"parent_id": msg.id, "root_id": msg.root_id or msg.id}


def _after_success(app: Fleet, msg: TaskMessage, meta: dict, meta_text: str | None,
                   plan: Plan, token: str) -> None:
    callbacks, value, parent = msg.callbacks, meta.get("result"), _parent(msg)
    for data in callbacks.get("link", ()):
        _revive(data, app)._build(app, (value,), {}, [], plan, parent)
    rest = [_revive(data, app) for data in callbacks.get("chain", ())]
    if rest:
        rest[0]._build(app, (value,), {}, rest[1:], plan, parent)
    if callbacks.get("chord"):
        _count_chord_member(app, msg, callbacks["chord"], meta_text or codec.dumps(meta),
                            plan, token)


def error_info(msg: TaskMessage, meta: dict) -> dict:
    """What an errback is told about the failure."""
    return {"task": msg.task, "exc_type": meta.get("exc_type"),
            "exc_module": meta.get("exc_module"), "exc_message": meta.get("exc_message")}


def _after_failure(app: Fleet, msg: TaskMessage, meta: dict, plan: Plan, token: str) -> None:
    callbacks = msg.callbacks
    _call_errbacks(app, msg, meta, [_revive(d, app) for d in callbacks.get("link_error", ())],
                   plan)
    for data in callbacks.get("chain", ()):  # never runs: its results become this failure
        _fail_results(_revive(data, app), msg, meta, plan)
    info = callbacks.get("chord")
    if info and _claim_chord(app, info["group"], token):
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


def _claim_chord(app: Fleet, group_id: str, token: str) -> bool:
    """True for exactly one follow-up per chord: the one that sends the body or fails it
    (also when an earlier attempt of the same follow-up, same token, claimed it before a
    broker error interrupted it)."""
    store, key = app.result_store, _keys(group_id)[2]
    return store.add_value(key, token, app.backend.ttl) or store.get_value(key) == token


def _count_member(app: Fleet, msg: TaskMessage, info: dict, token: str) -> int | None:
    """Count this header task once: the chord's count after it, or None when another
    follow-up (a redelivery) counted it. The member key holds "<token> <count>" once
    counted, so an attempt repeated after a broker error does not count twice."""
    store, ttl = app.result_store, app.backend.ttl
    member, count, _ = _keys(info["group"])
    key = member + msg.id
    if not store.add_value(key, token, ttl):
        owner, _, counted = (store.get_value(key) or "").partition(" ")
        if owner != token:
            return None
        if counted:
            return int(counted)
    total = store.incr(count, 1, ttl)
    store.set_values([StoredResult(key, f"{token} {total}", ttl)])
    return total


def _count_chord_member(app: Fleet, msg: TaskMessage, info: dict, meta_text: str,
                        plan: Plan, token: str) -> None:
    app.result_store.set_values([app.backend.store_encoded(msg.id, meta_text)])
    total = _count_member(app, msg, info, token)
    if total is None or total < info["size"] or not _claim_chord(app, info["group"], token):
        return
    ids = load_group(app, info["group"])
    if ids is None:
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


# -- who carries the plan out ----------------------------------------------------------------


def is_transient(app: Fleet, exc: BaseException) -> bool:
    """A result store error that retrying later can cure (follow-ups only use that store:
    their messages go out with the node's commit)."""
    return isinstance(exc, (BrokerUnavailable, *app.result_store.transient_errors))
