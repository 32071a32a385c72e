"""The solo and threads pools' mechanism without a node: threads of this process in slots,
their outcomes in a child's frame shape on one queue, and exits the supervisor can reap."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import threading
import time
import uuid

import pytest

from fleet import Fleet
from fleet.engine import states
from fleet.engine.pool import ChildSettings
from fleet.engine.sending import build_message
from fleet.engine.threadpool import ThreadPool


@pytest.fixture
def app():
    app = Fleet("threads", broker=f"memory://{uuid.uuid4().hex}")
    gate = threading.Barrier(2, timeout=5)

    @app.task(name="t.add")
    def add(x, y):
        return x + y

    @app.task(name="t.whoami", bind=True)
    def whoami(self):
        gate.wait()  # both threads are inside a task at once
        return [self.request.id, threading.current_thread().name]

    @app.task(name="t.wait")
    def wait(path):
        while not os.path.exists(path):
            time.sleep(0.01)
        return path

    yield app
    app.close()


@pytest.fixture
def pool(app):
    pool = ThreadPool(ChildSettings(app, "w1@h", 0, None, None, None), 2, "threads")
    yield pool
    for child in list(pool.children.values()):
        pool.kill(child, signal.SIGKILL)
    pool.close()


def posted(pool: ThreadPool, count: int, timeout: float = 5.0) -> list:
    """Wait (on the pool's wake-up pipe, as the node's loop does) for `count` items."""
    items: list = []
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(pool.fileno(), selectors.EVENT_READ)
        while len(items) < count:
            left = deadline - time.monotonic()
            assert left > 0, f"only {items} were posted"
            selector.select(left)
            items += pool.collect()
    return items


def send(pool, child, app, name, *args) -> str:
    msg = build_message(app, name, args, {}, {})
    pool.send(child, {"delivery": {"queue": "default"}}, msg.encode())
    return msg.id


def test_a_thread_says_up_runs_a_task_here_and_posts_its_outcome_like_a_child(pool, app):
    child = pool.spawn(1)
    [(who, up, _)] = posted(pool, 1)
    assert who is child and up == {"t": "up", "slot": 1, "pid": os.getpid()}
    child.up = True
    assert child.idle and child.label == "Thread 1" and pool.pids() == [os.getpid()]
    task_id = send(pool, child, app, "t.add", 2, 3)
    [(who, header, payload)] = posted(pool, 1)
    assert header["id"] == task_id and header["state"] == states.SUCCESS
    assert json.loads(payload)["result"] == 5


def test_a_retired_thread_ends_and_is_reaped_and_its_slot_is_free(pool):
    child = pool.spawn(1)
    pool.spawn(2)
    posted(pool, 2)
    assert pool.free_slots() == []
    pool.retire(child)
    assert not child.idle
    [(who, header, _)] = posted(pool, 1)
    assert who is child and header is None and child.exited
    assert pool.reap() == [(child, 0)]
    assert pool.free_slots() == [1]
    child.thread.join(5)
    assert not child.thread.is_alive()


def test_threads_run_at_once_each_with_its_own_request(pool, app):
    first, second = pool.spawn(1), pool.spawn(2)
    posted(pool, 2)
    ids = {send(pool, first, app, "t.whoami"), send(pool, second, app, "t.whoami")}
    results = [json.loads(payload)["result"] for _, _, payload in posted(pool, 2)]
    assert {request_id for request_id, _ in results} == ids
    assert sorted(name for _, name in results) == ["thread 1", "thread 2"]


def test_nothing_interrupts_a_running_thread_and_kill_abandons_it(pool, app, tmp_path):
    child = pool.spawn(1)
    posted(pool, 1)
    gate = tmp_path / "gate"
    send(pool, child, app, "t.wait", str(gate))
    pool.kill(child, signal.SIGTERM, "cold shutdown")
    pool.escalate(time.monotonic() + 60)
    assert child.killed_for == "cold shutdown" and not child.exited
    pool.kill(child, signal.SIGKILL)  # abandoned: gone at once, still running
    assert pool.reap() == [(child, 0)] and pool.children == {}
    assert child.thread.is_alive()
    gate.touch()
    items = posted(pool, 3)  # the abandon's wake-up, its late outcome, its exit
    assert [header and header.get("state") for _, header, _ in items] == \
        [None, states.SUCCESS, None]


def test_reaping_threads_never_takes_the_exit_status_of_a_tasks_process(pool):
    proc = subprocess.Popen(["true"])
    while True:  # exited, not yet waited for
        time.sleep(0.01)
        with open(f"/proc/{proc.pid}/stat") as stat:
            if stat.read().split()[2] == "Z":
                break
    assert pool.reap() == []
    assert proc.wait(5) == 0  # its status was still there for its owner
