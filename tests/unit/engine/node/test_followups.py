"""The follow-ups the node's main process carries out itself, without processes."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace

import pytest

from fleet import chord
from fleet.engine import states
from fleet.engine.node.followups import FollowUps
from fleet.engine.node.jobs import Job
from fleet.engine.results import exception_meta
from fleet.engine.transport.base import Batch, Delivery
from fleet.exceptions import TimeLimitExceeded
from tests.unit.engine.node.fakes import close_node, make_node
from tests.unit.engine.support import make_app, sent, tasks
from tests.unit.engine.test_workflow import _break


@pytest.fixture
def app():
    app = make_app()
    yield app
    app.close()


def test_the_node_retries_follow_ups_with_backoff_while_the_store_fails(app, monkeypatch):
    add, _, xsum = tasks(app)
    result = chord(add.s(i, i) for i in range(2))(xsum.s())
    first, _ = sent(app)
    consumer = SimpleNamespace(batch=Batch(), backend=app.backend)
    node = SimpleNamespace(app=app, conf=app.conf, name="n1@h", consumer=consumer)
    follow_ups = FollowUps(node)
    _break(app.result_store, monkeypatch, "add_value", times=2)  # claiming the chord fails
    failed = exception_meta(first.id, states.FAILURE, ValueError("nope"), None, task="t.add")
    follow_ups.add(first, failed)
    due = follow_ups.timer[0]
    assert due > time.monotonic() and consumer.batch.results == []
    assert follow_ups.retry(due) > due  # still failing: it backs off further
    assert follow_ups.retry(due + 60) == float("inf")
    assert follow_ups.waiting == []
    (body,) = consumer.batch.results  # the chord's result: the header's failure
    assert body.key.endswith(result.id) and '"exc_message":"nope"' in body.value


def test_a_failure_the_node_decides_itself_fails_the_rest_of_the_chain(app):
    add, mul, _ = tasks(app)
    result = (add.s(1, 1) | mul.s(8)).delay()
    (first,) = sent(app)
    node = make_node(app)
    stopped = Job(Delivery(first.id, "default", first.encode()), first, add, time.monotonic(),
                  acks_late=False, ignore_result=False)
    node.settler.fail(stopped, TimeLimitExceeded(2.0))  # (a hard time limit, say)
    metas = [json.loads(r.value) for r in node.consumer.batch.results]
    assert [(m["id"], m["exc_type"]) for m in metas] == [(first.id, "TimeLimitExceeded"),
                                                         (result.id, "TimeLimitExceeded")]
    assert metas[1]["failed_upstream"] == first.id
    close_node(node)
