"""Shutdown without processes: what a warm and a cold shutdown do with the jobs and the
children, and how the loop knows it is done."""

from __future__ import annotations

import json
import os
import signal
import time

from fleet.engine import states
from fleet.engine.node.jobs import COLD, RUNNING, STOPPED, WARM
from fleet.engine.node.shutdown import _same_command
from tests.unit.engine.node.fakes import job


def running(node, app, name="fast", x=1):
    new = job(app, name, x)
    node.jobs.buffer.append(new)
    node.dispatcher.dispatch()
    return new


def test_a_warm_shutdown_returns_unstarted_work_and_lets_running_tasks_finish(app, node):
    busy = running(node, app)
    waiting, later = job(app, "fast", 2), job(app, "fast", 3)
    node.jobs.buffer.append(waiting)
    node.jobs.hold_until(later, time.time() + 60)
    said = []
    node.hooks["shutdown"].append(lambda n, how: said.append(how))
    node.shutdown.begin(WARM, "TERM")
    assert node.state == WARM and said == [WARM]
    assert node.consumer.batch.requeues == [waiting.delivery.id, later.delivery.id]
    pool = node.children.pool
    assert pool.retired == [1] and busy.child.slot == 2  # the idle child goes, not the busy
    assert busy.child.job is busy and pool.signals == []


def test_a_second_warm_request_is_ignored_and_cold_overrides_warm(app, node):
    node.shutdown.begin(WARM, "TERM")
    node.shutdown.begin(WARM, "TERM again")
    assert node.state == WARM
    node.shutdown.begin(COLD, "second INT")
    assert node.state == COLD


def test_a_cold_shutdown_stops_running_tasks_requeueing_only_acks_late_ones(app, node):
    early, late = running(node, app, "fast", 1), running(node, app, "late", 2)
    node.shutdown.begin(COLD, "QUIT")
    batch = node.consumer.batch
    assert batch.requeues == [late.delivery.id]
    (meta,) = [json.loads(r.value) for r in batch.results]
    assert meta["id"] == early.message.id and meta["state"] == states.FAILURE
    assert "shut down cold while the task ran" in meta["exc_message"]
    pool = node.children.pool
    assert sorted(pool.signals) == [(1, signal.SIGTERM), (2, signal.SIGTERM)]
    assert not node.jobs.active and node.shutdown.cold_deadline > time.monotonic()


def test_the_loop_stops_once_no_child_is_left_and_kills_them_at_the_cold_deadline(app, node):
    running(node, app, "late", 1)
    node.shutdown.begin(COLD, "QUIT")
    pool = node.children.pool
    pool.signals.clear()
    node.shutdown.progress(time.monotonic())
    assert node.state == COLD and pool.signals == []
    node.shutdown.progress(node.shutdown.cold_deadline)
    assert sorted(pool.signals) == [(1, signal.SIGKILL), (2, signal.SIGKILL)]
    pool.children.clear()
    node.shutdown.progress(time.monotonic())
    assert node.state == STOPPED


def test_while_stopping_the_loop_looks_again_at_least_twice_a_second(app, node):
    now = time.monotonic()
    assert node.state == RUNNING and node.shutdown.deadlines(now) == []
    node.shutdown.begin(WARM)
    assert node.shutdown.deadlines(now) == [now + 0.5]


def test_a_restart_in_place_runs_the_same_command_without_detaching_again(tmp_path,
                                                                          monkeypatch):
    monkeypatch.chdir(tmp_path)
    here = os.getcwd()
    assert _same_command(["worker", "--detach", "--workdir", "proj", "-c", "2"]) == \
        ["worker", "--workdir", here, "-c", "2"]
    assert _same_command(["worker", "--workdir=proj", "--", "--detach"]) == \
        ["worker", f"--workdir={here}", "--", "--detach"]
