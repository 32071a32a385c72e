"""Settling without processes: what an outcome, or a lost child, puts in the next commit."""

from __future__ import annotations

import json
import os
import signal

import pytest

from fleet.engine import message as codec
from fleet.engine import states
from fleet.engine.node.settle import REDELIVERY_HEADER, format_runtime
from fleet.exceptions import TimeLimitExceeded
from tests.unit.engine.node.fakes import job

KILLED = signal.SIGKILL  # a wait status: killed by signal 9
EXITED_3 = 3 << 8  # a wait status: exited with code 3


def header(j, state=states.SUCCESS, **extra) -> dict:
    return {"id": j.message.id, "state": state, "runtime": 0.01, "summary": "4", **extra}


def settled(node) -> list[tuple]:
    """(task id, state) of every "settled" hook call, recorded by a hook."""
    calls: list[tuple] = []
    node.hooks["settled"].append(lambda _node, j, state, _h: calls.append((j.message.id, state)))
    return calls


def test_an_outcome_commits_its_result_and_its_ack_together(app, node):
    done, calls = job(app, "fast", 1), settled(node)
    node.settler.settle(done, header(done), b'{"state": "SUCCESS"}')
    batch = node.consumer.batch
    assert [r.key for r in batch.results] == [f"result:{done.message.id}"]
    assert batch.acks == [done.delivery.id] and not batch.puts
    assert node.jobs.processed == {"units.fast": 1}
    assert calls == [(done.message.id, states.SUCCESS)]


def test_an_ignored_result_is_not_stored_but_the_message_is_acked(app, node):
    done = job(app, "fast", 1, ignore_result=True)
    node.settler.settle(done, header(done), b'{"state": "SUCCESS"}')
    assert node.consumer.batch.results == [] and node.consumer.batch.acks == [done.delivery.id]


def test_a_retry_puts_the_task_again_with_one_more_retry_and_its_new_arguments(app, node):
    failed = job(app, "fast", 1)
    retry = {"eta": 1234.5, "args": [7]}
    node.settler.settle(failed, header(failed, states.RETRY, retry=retry, summary="retry"), b"")
    (again,) = node.consumer.batch.puts
    msg = codec.decode(again.body)
    assert (msg.id, msg.retries, msg.eta, msg.args) == (failed.message.id, 1, 1234.5, [7])
    assert again.eta == 1234.5 and node.consumer.batch.acks == [failed.delivery.id]


def test_follow_up_messages_go_out_with_the_same_commit(app, node):
    done = job(app, "fast", 1)
    send = [{"queue": "q2", "body": "{}", "priority": 3}]
    node.settler.settle(done, header(done, send=send), b"")
    (put,) = node.consumer.batch.puts
    assert (put.queue, put.body, put.priority, put.eta) == ("q2", "{}", 3, None)


def test_a_job_failed_by_the_node_gets_the_exception_as_its_result(app, node):
    stopped, calls = job(app, "limited", 1), settled(node)
    node.settler.fail(stopped, TimeLimitExceeded(2.0))
    meta = json.loads(node.consumer.batch.results[0].value)
    assert meta["state"] == states.FAILURE and meta["exc_type"] == "TimeLimitExceeded"
    assert meta["node"] == "unit@test" and meta["task"] == "units.limited"
    assert calls == [(stopped.message.id, states.FAILURE)]


def test_an_early_acked_task_lost_with_its_child_fails_as_worker_lost(app, node):
    lost = job(app, "fast", 1)
    node.settler.lost(lost, 4242, KILLED)
    meta = json.loads(node.consumer.batch.results[0].value)
    assert meta["exc_type"] == "WorkerLostError"
    assert "signal 9 (perhaps out of memory): the child process running it (pid 4242) died" \
        in meta["exc_message"]
    assert node.consumer.batch.acks == [lost.delivery.id]


def test_an_acks_late_task_lost_with_its_child_is_redelivered_a_few_times_then_failed(app,
                                                                                     node):
    lost = job(app, "late", 1)
    node.settler.lost(lost, 4242, EXITED_3)
    (again,) = node.consumer.batch.puts
    assert codec.decode(again.body).headers == {REDELIVERY_HEADER: 1}
    assert node.consumer.batch.results == []
    limit = node.conf.worker_lost_max_redeliveries
    worn = job(app, "late", 1, headers={REDELIVERY_HEADER: limit})
    node.settler.lost(worn, 4243, EXITED_3)
    meta = json.loads(node.consumer.batch.results[0].value)
    assert f"already redelivered {limit} times: giving up" in meta["exc_message"]


def test_a_task_terminated_on_request_is_revoked_not_lost(app, node):
    stopped = job(app, "late", 1)
    stopped.terminate = signal.SIGTERM
    node.settler.lost(stopped, 4242, signal.SIGTERM)
    meta = json.loads(node.consumer.batch.results[0].value)
    assert meta["state"] == states.REVOKED and "terminated with signal TERM" in meta[
        "exc_message"]
    assert node.consumer.batch.puts == []


@pytest.mark.parametrize(("seconds", "text"), [(0.000042, "42us"), (0.0123, "12.3ms"),
                                                (4.5, "4.50s")])
def test_runtimes_are_logged_in_a_readable_unit(seconds, text):
    assert format_runtime(seconds) == text


def test_wait_statuses_used_here_mean_what_they_say():
    assert os.WIFSIGNALED(KILLED) and os.WTERMSIG(KILLED) == 9
    assert os.WIFEXITED(EXITED_3) and os.WEXITSTATUS(EXITED_3) == 3
