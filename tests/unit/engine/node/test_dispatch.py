"""The dispatch buffer without processes: what becomes a job, which job runs next and where,
rate-limited jobs waiting aside (not in the prefetch), revoked and expired jobs refused, and
how much the node prefetches."""

from __future__ import annotations

import json
import time

from fleet.engine import message as codec
from fleet.engine import states
from fleet.engine.node.jobs import COLD
from fleet.engine.sending import build_message
from fleet.engine.transport.base import Delivery, Outgoing
from tests.unit.engine.node.fakes import job, started


def delivery(app, name: str, x: int = 0, **options) -> Delivery:
    msg = build_message(app, name, (x,), {}, options)
    return Delivery(msg.id, "default", msg.encode())


def reserved(node, body: str) -> Delivery:
    """`body` put on the broker and reserved by the node (as its consumer would)."""
    node.app.broker.put([Outgoing(codec.new_id(), "default", body)])
    (got,) = node.app.broker.reserve(node.consumer.id, ["default"], 1, 60)
    return got


def stored(node) -> dict[str, dict]:
    """The results the node will write with its next commit, by task id."""
    return {json.loads(r.value)["id"]: json.loads(r.value) for r in node.consumer.batch.results}


def free_children(node) -> None:
    for child in node.children.pool.children.values():
        child.job = None
    node.jobs.active.clear()


# -- rate limits -------------------------------------------------------------------------------


def test_jobs_over_their_rate_wait_aside_and_do_not_block_other_tasks(app, node):
    node.jobs.buffer.extend([job(app, "slow", 1), job(app, "slow", 2), job(app, "slow", 3),
                             job(app, "fast", 4)])
    node.dispatcher.dispatch()
    assert sorted(started(node)) == ["fast4", "slow1"]
    assert [j.message.args[0] for j in node.jobs.throttled["units.slow"]] == [2, 3]
    assert not node.jobs.buffer  # held jobs don't count against the prefetch
    assert node.dispatcher.has_capacity()


def test_lifting_a_rate_limit_at_runtime_releases_the_held_jobs_in_order(app, node):
    node.jobs.buffer.extend([job(app, "slow", 1), job(app, "slow", 2), job(app, "slow", 3)])
    node.dispatcher.dispatch()
    node.dispatcher.set_rate_limit(app.tasks["units.slow"], None)
    assert "units.slow" not in node.jobs.throttled
    assert [j.message.args[0] for j in node.jobs.buffer] == [2, 3]
    free_children(node)
    node.dispatcher.dispatch()
    assert sorted(started(node)) == ["slow2", "slow3"]


def test_a_faster_rate_set_at_runtime_applies_to_held_jobs(app, node):
    node.jobs.buffer.extend([job(app, "slow", 1), job(app, "slow", 2)])
    node.dispatcher.dispatch()
    node.dispatcher.set_rate_limit(app.tasks["units.slow"], "1000/s")
    free_children(node)
    time.sleep(0.01)
    node.dispatcher.dispatch()
    assert started(node) == ["slow2"]


# -- receiving ---------------------------------------------------------------------------------


def test_a_received_message_waits_in_the_buffer_or_until_its_eta(app, node):
    node.dispatcher.receive(delivery(app, "units.fast", 1))
    node.dispatcher.receive(delivery(app, "units.fast", 2, countdown=60))
    assert [j.message.args for j in node.jobs.buffer] == [[1]]
    ((eta, _, held),) = node.jobs.scheduled
    assert held.message.args == [2] and eta > time.time() + 50


def test_an_undecodable_message_goes_to_the_dead_letter_queue(app, node):
    node.dispatcher.receive(reserved(node, "not json"))
    (dead,) = app.broker.dead_letters()
    assert "undecodable message" in dead.reason and not node.jobs.buffer


def test_an_unknown_task_is_dead_lettered_and_its_result_says_why(app, node):
    bad = reserved(node, delivery(app, "units.nope").body)
    node.dispatcher.receive(bad)
    (dead,) = app.broker.dead_letters()
    assert "unknown task 'units.nope'" in dead.reason and "units.fast" in dead.reason
    meta = stored(node)[codec.decode(bad.body).id]
    assert meta["state"] == states.FAILURE and meta["exc_type"] == "NotRegistered"


# -- refusing ----------------------------------------------------------------------------------


def test_revoked_and_expired_jobs_are_settled_as_revoked_and_never_run(app, node):
    revoked, expired = job(app, "fast", 1), job(app, "fast", 2, expires=0.001)
    node.jobs.revoked.add(revoked.message.id)
    time.sleep(0.01)
    node.jobs.buffer.extend([revoked, expired, job(app, "fast", 3)])
    node.dispatcher.dispatch()
    assert started(node) == ["fast3"]
    metas = stored(node)
    assert metas[revoked.message.id]["reason"] == "revoked"
    assert metas[expired.message.id]["reason"] == "expired"
    assert "expired at" in metas[expired.message.id]["exc_message"]
    assert {m["state"] for m in metas.values()} == {states.REVOKED}
    assert node.consumer.batch.acks == [revoked.delivery.id, expired.delivery.id]


def test_revoking_held_jobs_settles_them_at_once(app, node):
    waiting, later, other = job(app, "fast", 1), job(app, "fast", 2), job(app, "fast", 3)
    node.jobs.buffer.extend([waiting, other])
    node.jobs.hold_until(later, time.time() + 60)
    ids = [waiting.message.id, later.message.id]
    node.jobs.revoked.update(ids)
    assert node.dispatcher.refuse_held(ids) == ids
    assert list(node.jobs.buffer) == [other] and not node.jobs.scheduled
    assert set(stored(node)) == set(ids)


def test_nothing_is_dispatched_in_a_cold_shutdown(app, node):
    node.jobs.buffer.append(job(app, "fast", 1))
    node.state = COLD
    node.dispatcher.dispatch()
    assert started(node) == []


# -- starting ----------------------------------------------------------------------------------


def test_a_started_job_gets_its_time_limits_and_is_marked_started_unless_acks_late(app, node):
    early, late = job(app, "limited", 1), job(app, "late", 2)
    node.jobs.buffer.extend([early, late])
    node.dispatcher.dispatch()
    assert (early.soft_limit, early.hard_limit) == (1.0, 2.0)
    assert early.hard_deadline == early.started + 2.0 and late.hard_deadline is None
    assert node.consumer.batch.started == [early.delivery.id]
    sent = node.children.pool.sent
    assert [codec.decode(body).id for _, _, body in sent] == [early.message.id, late.message.id]
    assert sent[0][1] == {"delivery": {"queue": "default", "priority": 0,
                                       "redelivered": False}}


def test_a_pool_that_cannot_apply_time_limits_runs_the_task_without_and_says_so_once(
        app, node, caplog):
    node.children.pool.can_signal = False  # as solo and threads
    node.options.pool = "threads"
    first, second = job(app, "limited", 1), job(app, "limited", 2)
    node.jobs.buffer.extend([first, second])
    with caplog.at_level("WARNING", logger="fleet.worker"):
        node.dispatcher.dispatch()
    assert first.hard_deadline is None and second.soft_deadline is None
    assert (first.soft_limit, first.hard_limit) == (None, None)
    [warning] = [r.getMessage() for r in caplog.records if "time limits" in r.getMessage()]
    assert "units.limited asks for time limits (soft 1.0, hard 2.0) that the threads pool " \
           "cannot apply" in warning


def test_track_started_stores_a_started_result_naming_the_child(app, node):
    tracked = job(app, "fast", 1, track_started=True)
    node.jobs.buffer.append(tracked)
    node.dispatcher.dispatch()
    meta = stored(node)[tracked.message.id]
    assert meta["state"] == states.STARTED and meta["pid"] == tracked.child.pid


# -- how much to prefetch ----------------------------------------------------------------------


def test_the_prefetch_is_concurrency_times_the_multiplier_taken_in_chunks(app, node):
    dispatcher = node.dispatcher
    assert dispatcher.prefetch_limit == 8 and dispatcher.wanted(time.monotonic()) == 8
    node.jobs.buffer.extend(job(app, "fast", i) for i in range(5))
    assert dispatcher.wanted(time.monotonic()) == 0  # 3 free: wait for a chunk of 4
    node.jobs.buffer.pop()
    assert dispatcher.wanted(time.monotonic()) == 4


def test_while_a_long_task_runs_only_what_idle_children_start_is_reserved(app, node):
    node.jobs.buffer.append(job(app, "fast", 1))
    node.dispatcher.dispatch()
    ((_, running),) = node.jobs.active.items()
    running.started -= node.conf.worker_prefetch_timeout + 1
    assert node.dispatcher.wanted(time.monotonic()) == 1  # one idle child, nothing held


def test_prefetched_jobs_stuck_behind_long_tasks_go_back_to_their_queues(app, node):
    node.jobs.buffer.extend([job(app, "fast", 1), job(app, "fast", 2)])
    node.dispatcher.dispatch()
    waiting = job(app, "fast", 3)
    node.jobs.buffer.append(waiting)
    now = time.monotonic()
    node.dispatcher.release_hostages(now)
    assert list(node.jobs.buffer) == [waiting]  # not stuck for long yet
    long_ago = now - node.conf.worker_prefetch_timeout - 1
    for running in node.jobs.active.values():
        running.started = long_ago
    waiting.due = long_ago
    node.dispatcher.release_hostages(now)
    assert not node.jobs.buffer and node.consumer.batch.requeues == [waiting.delivery.id]
