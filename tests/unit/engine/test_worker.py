"""The node's loop without processes: its parts, its timers and hooks, how long it sleeps,
and what each signal does."""

from __future__ import annotations

import logging
import time

from fleet.engine import worker
from fleet.engine.node.jobs import COLD, RUNNING, WARM
from tests.unit.engine.node.fakes import job


def test_a_node_is_its_loop_and_one_of_each_part_sharing_its_jobs(node):
    parts = (node.consumer, node.dispatcher, node.children, node.settler, node.shutdown)
    assert [type(part).__module__.rsplit(".", 1)[1] for part in parts] == \
        ["consumer", "dispatch", "children", "settle", "shutdown"]
    assert node.dispatcher.buffer is node.jobs.buffer
    assert node.children.active is node.jobs.active


def test_names_that_moved_into_the_nodes_parts_are_still_importable_from_worker():
    from fleet.engine.node import consumer, shutdown

    assert worker.connect_with_retry is consumer.connect_with_retry
    assert worker.restart_in_place is shutdown.restart_in_place
    assert {"Node", "NodeOptions", "Job", "WARM", "_same_command"} <= set(worker.__all__)


def test_a_timer_runs_when_due_and_says_when_it_runs_next(node):
    calls: list[float] = []

    def tick(now: float) -> float:
        calls.append(now)
        return now + 10

    node.add_timer(tick, due=5.0)
    node._run_timers(4.0)
    node._run_timers(6.0)
    node._run_timers(7.0)
    assert calls == [6.0] and node.timers[-1][0] == 16.0


def test_the_loop_sleeps_until_the_next_thing_due_and_never_more_than_a_second(node):
    later = time.monotonic() + 30  # no heartbeat, no fetch, no polling due for a while
    consumer = node.consumer
    consumer.next_heartbeat = consumer.last_fetch = consumer._next_subscription_poll = later
    assert 0.9 < node._timeout() <= 1.0
    node.add_timer(lambda now: now + 60, due=time.monotonic() + 0.2)
    assert 0.1 < node._timeout() <= 0.2
    node.add_timer(lambda now: now + 60, due=0.0)
    assert node._timeout() == 0.0


def test_a_failing_hook_is_logged_and_never_stops_the_node(node, caplog):
    seen: list[str] = []

    def broken(_node, *args):
        raise RuntimeError("a bug in a plugin")

    node.hooks["received"] += [broken, lambda _node, *args: seen.append("next hook")]
    with caplog.at_level(logging.ERROR, "fleet.worker"):
        node.emit("received", "a job")
    assert seen == ["next hook"] and "a bug in a plugin" in caplog.text


def test_signals_map_to_shutdowns_restarts_and_resizes(node):
    node.handle_ttin()
    assert node.options.concurrency == 3
    node.handle_ttou()
    assert node.options.concurrency == 2
    node.handle_hup()
    assert node.restart_requested and node.state == WARM
    node.handle_int()  # a second INT while stopping: cold
    assert node.state == COLD


def test_a_first_int_is_warm_and_term_is_warm(node):
    node.jobs.buffer.append(job(node.app, "fast", 1))
    node.handle_int()
    assert node.state == WARM and not node.jobs.buffer
    node.state = RUNNING
    node.handle_term()
    assert node.state == WARM and not node.restart_requested


def test_a_turn_dispatches_ready_jobs_and_releases_due_etas(node):
    ready, due = job(node.app, "fast", 1), job(node.app, "fast", 2)
    node.jobs.buffer.append(ready)
    node.jobs.hold_until(due, time.time() - 1)
    node._turn()
    assert sorted(j.message.args[0] for j in node.jobs.active.values()) == [1, 2]


def test_the_banner_names_the_node_its_broker_without_secrets_and_its_tasks():
    from fleet import Fleet
    from fleet.engine.worker import Node, NodeOptions

    app = Fleet("proj", broker="redis://:secret@db:6379/0")
    app.task(name="proj.add")(lambda x, y: x + y)
    node = Node(app, NodeOptions("w1@h", ["default", "q2"], concurrency=3))
    text = worker.banner(node)
    assert " node:         w1@h" in text and " concurrency:  3 (prefork)" in text
    assert "secret" not in text and " queues:       default, q2" in text
    assert "  . proj.add" in text and " results:      (the broker)" in text
    node.selector.close()
    node.signals.close()
