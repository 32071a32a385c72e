"""The dashboard's history: events folded into task rows, bounded, paged, kept on disk."""

from __future__ import annotations

import time

import pytest

from fleet.dashboard.history import BUCKET, History
from fleet.engine.transport.base import QueueStats


def event(kind, uuid, at, **fields):
    return {"type": kind, "uuid": uuid, "timestamp": at, "node": "w1@host", **fields}


def lifecycle(uuid, at, name="proj.add", outcome="task-succeeded", **extra):
    return [event("task-received", uuid, at, name=name, args=[1, 2], kwargs={}, retries=0,
                  queue="default"),
            event("task-started", uuid, at + 0.1, name=name),
            event(outcome, uuid, at + 0.3, name=name, runtime=0.2,
                  **({"result": 3} if outcome == "task-succeeded" else
                     {"exception": "ValueError: boom"}), **extra)]


@pytest.fixture
def history(tmp_path):
    store = History(tmp_path / "dashboard.db", max_tasks=1000)
    yield store
    store.close()


def test_a_task_row_merges_every_event_of_the_task(history):
    history.ingest(lifecycle("t1", 1000.0))
    row = history.task("t1")
    assert row["state"] == "SUCCESS" and row["name"] == "proj.add" and row["node"] == "w1@host"
    assert row["args"] == [1, 2] and row["kwargs"] == {} and row["result"] == 3
    assert (row["received"], row["started"], row["finished"]) == (1000.0, 1000.1, 1000.3)
    assert row["runtime"] == 0.2 and row["queue"] == "default" and row["retries"] == 0


def test_a_late_event_never_hides_a_newer_state(history):
    done, received = lifecycle("t1", 1000.0)[2], lifecycle("t1", 1000.0)[0]
    history.ingest([done])
    history.ingest([received])  # arrives last, happened first
    assert history.task("t1")["state"] == "SUCCESS"
    assert history.task("t1")["args"] == [1, 2]


def test_failures_keep_the_exception(history):
    history.ingest(lifecycle("t1", 1000.0, outcome="task-failed"))
    row = history.task("t1")
    assert row["state"] == "FAILURE" and row["exception"] == "ValueError: boom"


def test_a_custom_state_shows_with_its_meta_until_the_task_finishes(history):
    """Issue 17: update_state's task-updated events put the task in its own state."""
    received, started, done = lifecycle("t1", 1000.0)
    progress = event("task-updated", "t1", 1000.2, name="proj.add", state="PROGRESS",
                     info={"done": 3, "total": 10})
    history.ingest([received, started, progress])
    row = history.task("t1")
    assert (row["state"], row["result"], row["finished"]) == ("PROGRESS", {"done": 3,
                                                                           "total": 10}, None)
    history.ingest([done])
    assert history.task("t1")["state"] == "SUCCESS" and history.task("t1")["result"] == 3


def test_the_history_keeps_at_most_max_tasks_and_forgets_the_oldest(tmp_path):
    store = History(tmp_path / "small.db", max_tasks=10)
    try:
        for i in range(25):
            store.ingest([event("task-received", f"t{i}", 1000.0 + i, name="proj.add")])
        page = store.page(limit=100)
        assert page.total == 10
        assert [row["id"] for row in page.rows] == [f"t{i}" for i in range(24, 14, -1)]
    finally:
        store.close()


def test_the_history_survives_a_restart_with_its_secret(tmp_path):
    path = tmp_path / "dashboard.db"
    first = History(path)
    first.ingest(lifecycle("t1", 1000.0))
    secret = first.secret()
    first.close()
    second = History(path)
    try:
        assert second.task("t1")["state"] == "SUCCESS"
        assert second.secret() == secret and len(secret) == 32
    finally:
        second.close()
    assert path.stat().st_mode & 0o777 == 0o600


def test_pages_filter_exactly_and_walk_both_ways(history):
    for i in range(30):
        name = "proj.add" if i % 2 else "proj.mul"
        outcome = "task-failed" if i % 3 == 0 else "task-succeeded"
        history.ingest(lifecycle(f"t{i:02d}", 1000.0 + i, name=name, outcome=outcome))
    failed = history.page({"state": "FAILURE"}, limit=100)
    assert failed.total == 10 and {row["state"] for row in failed.rows} == {"FAILURE"}
    adds = history.page({"name": "proj.add", "state": "SUCCESS"}, limit=100)
    assert {row["name"] for row in adds.rows} == {"proj.add"}

    first = history.page(limit=8)
    assert first.newer is None and first.older is not None
    second = history.page(limit=8, before=first.older)
    assert [row["id"] for row in second.rows] == [f"t{i:02d}" for i in range(21, 13, -1)]
    back = history.page(limit=8, after=second.newer)
    assert [row["id"] for row in back.rows] == [row["id"] for row in first.rows]
    last = history.page(limit=8, before=history.page(limit=8, before=second.older).older)
    assert last.older is None and len(last.rows) == 6


def test_counts_feed_the_charts_per_bucket(history):
    now = 10_000.0
    history.ingest(lifecycle("a", now - 25) + lifecycle("b", now - 5, outcome="task-failed"))
    history.record_queues([QueueStats("default", ready=7, consumers=2)], now - 3)
    series = history.series(now - 60, now)
    assert series["bucket_seconds"] == BUCKET
    assert sum(series["counts"]["succeeded"]) == 1 and sum(series["counts"]["failed"]) == 1
    assert sum(series["counts"]["received"]) == 2
    assert series["queues"] == {"default": [7]} and series["queue_times"] == [9990]


def test_expire_forgets_chart_data_older_than_the_retention(tmp_path):
    store = History(tmp_path / "d.db", retention=100.0)
    try:
        store.ingest(lifecycle("a", 1000.0))
        store.record_queues([QueueStats("default", ready=1)], 1000.0)
        store.expire(now=1200.0)
        assert store.series(0, 1200.0)["queues"] == {}
        assert sum(store.series(0, 1200.0)["counts"]["succeeded"]) == 0
        assert store.task("a") is not None  # tasks are bounded by count, not age
    finally:
        store.close()


def test_worker_events_remember_nodes_and_offline_ones(history):
    history.ingest([{"type": "worker-heartbeat", "node": "w1@host", "timestamp": 5.0,
                     "active": 1, "processed": 9},
                    {"type": "worker-offline", "node": "w2@host", "timestamp": 6.0}])
    nodes = {node["name"]: node for node in history.nodes()}
    assert nodes["w1@host"]["event"]["processed"] == 9 and not nodes["w1@host"]["offline"]
    assert nodes["w2@host"]["offline"]


def test_workflow_children_and_resends_are_found(history):
    history.ingest([event("task-received", "parent", 1.0, name="a"),
                    event("task-received", "child", 2.0, name="b", parent_id="parent",
                          root_id="parent")])
    history.note_resent("parent", "again", "a", "default", [1], {})
    children = {row["id"] for row in history.children("parent")}
    assert children == {"child", "again"}
    assert history.task("again")["resent_from"] == "parent"
    assert history.task("child")["root_id"] == "parent"


def test_a_page_at_100000_tasks_is_fast(tmp_path):
    store = History(tmp_path / "big.db", max_tasks=100_000)
    try:
        start = 1_000_000.0
        batch = []
        for i in range(100_000):
            state = "task-failed" if i % 50 == 0 else "task-succeeded"
            batch.append(event(state, f"id{i:06d}", start + i, name=f"proj.t{i % 20}",
                               runtime=0.01, exception="boom"))
            if len(batch) == 5000:
                store.ingest(batch)
                batch = []
        began = time.perf_counter()
        page = store.page({"state": "FAILURE"}, limit=50)
        deep = store.page(limit=50, before=page.rows[-1]["seq"] - 90_000)
        counts = store.state_counts()
        elapsed = time.perf_counter() - began
        assert page.total == 2000 and len(deep.rows) == 50
        assert counts == {"SUCCESS": 98_000, "FAILURE": 2000}
        assert elapsed < 0.5, f"took {elapsed:.3f}s"
    finally:
        store.close()


def test_a_long_window_is_summed_into_at_most_points_steps(history):
    now = 100_000.0
    for i in range(360):  # an hour of 10 s buckets, one success each
        history.ingest([event("task-succeeded", f"s{i}", now - 3600 + i * 10)])
    history.record_queues([QueueStats("default", ready=5)], now - 100)
    history.record_queues([QueueStats("default", ready=9)], now - 95)
    series = history.series(now - 3600, now, points=60)
    assert series["bucket_seconds"] == 60 and len(series["buckets"]) <= 61
    assert sum(series["counts"]["succeeded"]) == 360
    assert max(series["counts"]["succeeded"]) == 6
    assert series["queues"] == {"default": [9]}  # the largest sample of the step
