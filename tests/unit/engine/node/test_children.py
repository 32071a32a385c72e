"""Child supervision's decisions without processes: time limits, boot failures and their
backoff, outcomes and exits of children, and the pool's size."""

from __future__ import annotations

import json
import signal
import time
from types import SimpleNamespace

import pytest

from fleet.engine import states
from fleet.engine.node.children import (
    HARD,
    MAX_BOOT_FAILURES,
    SOFT,
    limit_reached,
    respawn_delay,
    time_limits,
)
from fleet.engine.node.jobs import COLD, RUNNING
from fleet.operator_errors import FleetError
from tests.unit.engine.node.fakes import job, started


def running(node, app, name="fast", x=1, **options):
    """Start a job of units.<name> in an idle child; return the job."""
    new = job(app, name, x, **options)
    node.jobs.buffer.append(new)
    node.dispatcher.dispatch()
    return new


# -- time limits -------------------------------------------------------------------------------


def test_time_limits_come_from_the_call_then_the_task_then_the_node_then_the_app(app):
    conf = SimpleNamespace(task_soft_time_limit=50.0, task_time_limit=60.0)
    options = SimpleNamespace(soft_time_limit=None, time_limit=30.0)
    assert time_limits(job(app, "fast"), options, conf) == (50.0, 30.0)
    assert time_limits(job(app, "limited"), options, conf) == (1.0, 2.0)
    assert time_limits(job(app, "limited", soft_time_limit=5, time_limit=9), options,
                       conf) == (5, 9)


def test_the_hard_limit_wins_and_the_soft_one_is_told_once(app):
    late = job(app, "limited")
    late.soft_deadline, late.hard_deadline = 10.0, 20.0
    assert limit_reached(late, 9.9) is None
    assert limit_reached(late, 10.0) == SOFT
    late.soft_sent = True
    assert limit_reached(late, 15.0) is None
    assert limit_reached(late, 20.0) == HARD


def test_a_soft_limit_signals_the_task_and_a_hard_limit_replaces_the_child(app, node):
    pool = node.children.pool
    slow = running(node, app, "limited")
    child = slow.child
    node.children.enforce_time_limits(slow.started + 1.0)
    assert pool.signals == [(child.slot, signal.SIGUSR1)] and slow.soft_sent
    node.children.enforce_time_limits(slow.started + 2.0)
    assert (child.slot, signal.SIGTERM) in pool.signals and child.pid in pool.terminating
    assert child.retiring == "killed: hard time limit" and child.job is None
    assert not node.jobs.active
    meta = json.loads(node.consumer.batch.results[0].value)
    assert meta["exc_type"] == "TimeLimitExceeded"
    assert pool.spawned == [child.slot]  # its replacement starts while it is stopped


# -- outcomes and exits ------------------------------------------------------------------------


def test_the_node_is_ready_once_every_child_said_it_is_up(app, node):
    node.ready = False
    became = []
    node.hooks["ready"].append(lambda n: became.append(n.name))
    first, second = node.children.pool.children.values()
    first.up = second.up = False
    node.children._on_frame(first, {"t": "up"}, b"")
    assert not node.ready and became == []
    node.children._on_frame(second, {"t": "up"}, b"")
    assert node.ready and became == ["unit@test"]
    assert node.consumer.next_heartbeat == 0.0  # the broker hears of it at once


def test_an_outcome_settles_the_childs_job_and_a_stale_one_is_ignored(app, node):
    done = running(node, app)
    child = done.child
    node.children._on_frame(child, {"id": "someone-else", "state": states.SUCCESS}, b"")
    assert started(node) == ["fast1"]
    node.children._on_frame(child, {"id": done.message.id, "state": states.SUCCESS,
                                    "runtime": 0.1, "summary": "1"}, b"{}")
    assert started(node) == [] and child.job is None and child.tasks_done == 1
    assert node.consumer.batch.acks == [done.delivery.id]


def test_a_retiring_child_is_let_go_and_replaced(app, node):
    done = running(node, app)
    child = done.child
    node.children._on_frame(child, {"id": done.message.id, "state": states.SUCCESS,
                                    "runtime": 0.1, "summary": "1",
                                    "retiring": "reached its limit of 1 tasks"}, b"")
    assert child.retiring == "reached its limit of 1 tasks"
    assert node.children.pool.retired == [child.slot]
    assert node.children.pool.spawned == [child.slot]


def test_a_child_that_dies_with_a_task_has_its_job_settled_as_lost(app, node):
    lost = running(node, app)
    node.children.pool.exited = [(lost.child, signal.SIGKILL)]
    node.children.reap()
    meta = json.loads(node.consumer.batch.results[0].value)
    assert meta["exc_type"] == "WorkerLostError" and not node.jobs.active
    assert node.children.pool.spawned == [lost.child.slot]


# -- boot failures -----------------------------------------------------------------------------


@pytest.mark.parametrize(("failures", "delay"), [(1, 0.1), (2, 0.2), (4, 0.8), (20, 10.0)])
def test_a_replacement_that_does_not_come_up_is_retried_with_doubling_backoff(failures, delay):
    assert respawn_delay(failures) == pytest.approx(delay)


def test_children_that_keep_dying_at_start_stop_a_node_that_was_never_ready(app, node):
    node.ready = False
    pool = node.children.pool
    for _ in range(MAX_BOOT_FAILURES - 1):
        pool.exited = [(pool.add(1), 1 << 8)]
        node.children.reap()
        assert node.state == RUNNING and node.children.spawn_not_before > time.monotonic()
        node.children.spawn_not_before = 0.0
    pool.exited = [(pool.add(1), 1 << 8)]
    node.children.reap()
    assert node.state == COLD and node.exit_code == 1


def test_after_ready_a_failing_child_is_retried_for_as_long_as_it_takes(app, node):
    pool = node.children.pool
    for attempt in range(MAX_BOOT_FAILURES + 2):
        pool.exited = [(pool.add(1), 1 << 8)]
        node.children.reap()
        node.children.spawn_not_before = 0.0
        assert node.state == RUNNING and node.children.boot_failures == attempt + 1
    node.children._on_frame(pool.add(1), {"t": "up"}, b"")
    assert node.children.boot_failures == 0


def test_a_child_that_never_reports_ready_is_killed(app, node):
    silent = node.children.pool.add(3)
    silent.born -= node.conf.worker_proc_alive_timeout + 1
    node.children.check_boot_timeouts(time.monotonic())
    assert node.children.pool.signals == [(3, signal.SIGKILL)]
    assert silent.killed_for == "no ready report"


# -- size --------------------------------------------------------------------------------------


def test_shrinking_retires_the_highest_slots_and_busy_ones_finish_first(app, node):
    busy = running(node, app)  # the dispatcher takes the child of the highest slot first
    node.children.grow(1, "TTIN")
    assert node.options.concurrency == 3 and node.children.pool.spawned == [3]
    node.children.shrink(2, "TTOU")
    pool = node.children.pool
    assert node.options.concurrency == 1
    retiring = {child.slot: child.retiring for child in pool.children.values()}
    assert retiring == {1: None, 2: "pool shrank", 3: "pool shrank"}
    assert busy.child.slot == 2 and 2 not in pool.retired and 3 in pool.retired
    node.children.shrink(5)
    assert node.options.concurrency == 1  # never below one child


def test_with_autoscale_a_manual_resize_outside_its_range_is_refused(app, node):
    from fleet.engine.autoscale import Autoscaler

    Autoscaler(node, maximum=2, minimum=2, keepalive=30).attach()
    with pytest.raises(FleetError, match="over the autoscale maximum"):
        node.children.grow(1, "pool_grow")
    assert node.options.concurrency == 2 and node.children.growth_room() == 0


def test_terminating_signals_only_the_children_running_those_tasks(app, node):
    one, two = running(node, app, x=1), running(node, app, x=2)
    hit = node.children.signal_tasks([two.message.id, "unknown"], signal.SIGKILL)
    assert hit == [two] and two.terminate == signal.SIGKILL and one.terminate is None
    assert node.children.pool.signals == [(two.child.slot, signal.SIGKILL)]


def test_in_solo_and_threads_terminating_a_running_task_is_refused_by_name(app):
    from tests.unit.engine.node.fakes import close_node, make_node

    node = make_node(app, pool="threads")
    node.children.pool.can_signal = False  # as the threads pool
    try:
        task = running(node, app)
        assert node.children.signal_tasks(["not-running"], signal.SIGTERM) == []
        with pytest.raises(FleetError, match=f"cannot terminate {task.message.id}: in the "
                                             "threads pool") as refused:
            node.children.signal_tasks([task.message.id], signal.SIGTERM)
        assert "--pool prefork" in refused.value.one_line()
        assert task.terminate is None and node.children.pool.signals == []
    finally:
        close_node(node)


def test_solo_never_changes_size_and_says_so(app):
    from tests.unit.engine.node.fakes import close_node, make_node

    node = make_node(app, concurrency=1, pool="solo")
    try:
        for change in (node.children.grow, node.children.shrink):
            with pytest.raises(FleetError, match="the solo pool runs one task at a time"):
                change(1, "TTIN")
        assert node.options.concurrency == 1
        assert node.children.describe() == "1 thread (solo)"
    finally:
        close_node(node)


def test_the_pool_in_a_few_words(app, node):
    assert node.children.describe() == "2 children"
    node.options.pool = "threads"
    assert node.children.describe() == "2 threads"


def test_a_pool_restart_replaces_idle_children_now_and_busy_ones_after_their_task(app, node):
    busy = running(node, app)
    assert node.children.restart_all() == 2
    pool = node.children.pool
    assert {c.retiring for c in pool.children.values()} == {"pool restart"}
    assert busy.child.slot not in pool.retired and len(pool.retired) == 1


def test_the_pool_never_grows_past_worker_max_concurrency(app, node):
    # Regression (issue 13): pool_grow N had no upper bound (a fork bomb by one request).
    app.conf.worker_max_concurrency = 3
    node.children.grow(1, "pool_grow")
    assert node.options.concurrency == 3
    with pytest.raises(FleetError, match=r"pool_grow refused: .* over worker_max_concurrency"):
        node.children.grow(1, "pool_grow")
    assert node.options.concurrency == 3
    from fleet.engine.autoscale import Autoscaler

    scaler = Autoscaler(node, maximum=3, minimum=1, keepalive=30)
    scaler.attach()
    with pytest.raises(FleetError, match="over worker_max_concurrency"):
        scaler.update(10, 1)
    assert scaler.maximum == 3


def test_worker_max_concurrency_defaults_to_64_or_4_per_cpu(app, node, monkeypatch):
    import os

    from fleet.engine.node.children import max_concurrency

    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert max_concurrency(app.conf) == 64
    monkeypatch.setattr(os, "cpu_count", lambda: 32)
    assert max_concurrency(app.conf) == 128


def test_a_node_asked_for_more_children_than_allowed_refuses_to_start(app):
    from fleet.engine.worker import Node, NodeOptions
    from fleet.operator_errors import ConfigError

    app.conf.worker_max_concurrency = 4
    for options in (NodeOptions("w@h", ["q"], concurrency=5),
                    NodeOptions("w@h", ["q"], concurrency=1, autoscale=(8, 1))):
        node = Node(app, options)
        with pytest.raises(ConfigError, match="over worker_max_concurrency"):
            node._check_pool_size()
        node.selector.close()
        node.signals.close()
