"""Workflows through real nodes, on both brokers: groups, chains, chords, map/starmap/chunks,
callbacks and errbacks, with exact expected values."""

from __future__ import annotations

import pytest

from fleet import GroupResult, chain, chord, group, signature
from fleet.engine import states
from fleet.exceptions import NotRegistered, TimeLimitExceeded


def test_a_group_of_10_returns_results_in_submission_order(app, nodes):
    nodes.start()
    from testapp import add

    result = group(add.s(i, i) for i in range(10)).delay()
    assert isinstance(result, GroupResult) and len(result) == 10
    assert result.get(timeout=20) == [i * 2 for i in range(10)]
    assert result.ready() and result.successful() and not result.failed()
    assert result.completed_count() == 10


def test_a_partial_group_prepends_the_call_arguments_to_every_member(app, nodes):
    nodes.start()
    from testapp import add

    result = group(add.s(i) for i in range(10))(10)
    assert result.get(timeout=20) == [10 + i for i in range(10)]


def test_a_group_result_saved_by_id_is_restored_elsewhere(app, nodes):
    nodes.start()
    from testapp import add

    result = group(add.s(i, 1) for i in range(3)).delay().save()
    restored = GroupResult.restore(result.id, app=app)
    assert restored == result
    assert restored.get(timeout=20) == [1, 2, 3]
    assert GroupResult.restore("no-such-group", app=app) is None


def test_a_group_with_a_failure_propagates_it_or_lists_it(app, nodes):
    nodes.start()
    from testapp import add, fail

    result = group(add.s(1, 1), fail.s("in group"), add.s(2, 2)).delay()
    with pytest.raises(ValueError, match="in group"):
        result.get(timeout=20)
    values = result.get(timeout=20, propagate=False)
    assert values[0] == 2 and values[2] == 4 and isinstance(values[1], ValueError)
    assert result.failed() and not result.successful() and result.completed_count() == 2


def test_a_chain_of_3_feeds_each_result_into_the_next(app, nodes):
    nodes.start()
    from testapp import add, mul

    result = (add.s(4, 4) | mul.s(8) | mul.s(10)).delay()
    assert result.get(timeout=20) == 640
    assert result.parent.get(timeout=5) == 64
    assert result.parent.parent.get(timeout=5) == 8
    assert result.parent.parent.parent is None


def test_a_partial_chain_takes_its_first_arguments_at_call_time(app, nodes):
    nodes.start()
    from testapp import add, mul

    result = chain(add.s(4) | mul.s(8))(4)
    assert result.get(timeout=20) == 64
    assert add.s(4).delay(6).get(timeout=20) == 10  # add(6, 4)


def test_nested_chains_run_in_order(app, nodes):
    nodes.start()
    from testapp import add, mul

    inner = chain(mul.s(3), add.s(4))
    result = chain(add.s(1, 1), inner, mul.s(2)).apply_async()
    assert result.get(timeout=20) == ((1 + 1) * 3 + 4) * 2


def test_an_immutable_signature_ignores_the_previous_result(app, nodes):
    nodes.start()
    from testapp import add, mul

    result = (add.s(1, 1) | mul.si(5, 5) | add.s(1)).delay()
    assert result.get(timeout=20) == 26


def test_a_chord_of_10_calls_the_body_once_with_every_result(app, nodes):
    nodes.start()
    from testapp import add, echo, xsum

    result = chord(add.s(i, i) for i in range(10))(xsum.s())
    assert result.get(timeout=20) == 90
    assert result.parent.get(timeout=5) == [i * 2 for i in range(10)]
    listed = chord([add.s(i, 1) for i in range(3)], echo.s("tail")).delay()
    assert listed.get(timeout=20) == {"args": [[1, 2, 3], "tail"], "kwargs": {}}


def test_a_chord_of_200_across_two_nodes_fires_its_body_exactly_once(app, nodes, tmp_path):
    first = nodes.start(name="w1", concurrency=2)
    second = nodes.start(name="w2", concurrency=2)
    from testapp import add, tick, xsum

    marker = tmp_path / "body.txt"
    body = xsum.s() | tick.si(str(marker), "body")
    result = chord([add.s(i, i) for i in range(200)], body).delay()
    assert result.get(timeout=60) == "body"
    assert result.parent.get(timeout=5) == sum(i * 2 for i in range(200))
    assert len(marker.read_text().splitlines()) == 1
    for node in (first, second):
        assert "testapp.add[" in node.log_text(), f"{node.name} ran no header task"


def test_group_then_task_becomes_a_chord(app, nodes):
    nodes.start()
    from testapp import add, xsum

    workflow = group(add.s(i, i) for i in range(10)) | xsum.s()
    assert type(workflow).__name__ == "Chord"
    assert workflow.delay().get(timeout=20) == 90


def test_a_chain_containing_a_group_and_a_chord(app, nodes):
    nodes.start()
    from testapp import add, mul, xsum

    result = chain(add.s(1, 1), group(mul.s(2), mul.s(3)), xsum.s(), add.s(10)).delay()
    assert result.get(timeout=20) == 2 * 2 + 2 * 3 + 10
    in_chain = (add.s(2, 2) | chord([mul.s(1), mul.s(2)], xsum.s()) | mul.s(10)).delay()
    assert in_chain.get(timeout=20) == (4 + 8) * 10
    ending = (add.s(1, 1) | group(mul.s(5), mul.s(6))).delay()
    assert isinstance(ending, GroupResult) and ending.get(timeout=20) == [10, 12]


def test_chains_inside_groups_and_chord_headers_and_chords_inside_groups(app, nodes):
    nodes.start()
    from testapp import add, mul, xsum

    grouped = group(add.s(1, 1) | mul.s(2), add.s(3, 3), chord([add.s(1, 1)], xsum.s())).delay()
    assert grouped.get(timeout=20) == [4, 6, 2]
    headed = chord([add.s(i, i) | mul.s(10) for i in range(5)], xsum.s()).delay()
    assert headed.get(timeout=20) == sum(i * 2 * 10 for i in range(5))
    empty = chord([], xsum.s()).delay()
    assert empty.get(timeout=20) == 0


def test_map_starmap_and_chunks(app, nodes):
    nodes.start()
    from testapp import add, xsum

    assert xsum.map([[1, 2], [3, 4]]).delay().get(timeout=20) == [3, 7]
    assert add.starmap([(1, 2), (3, 4)]).delay().get(timeout=20) == [3, 7]
    chunked = add.chunks(zip(range(10), range(10), strict=True), 3).delay()
    assert chunked.get(timeout=20) == [[0, 2, 4], [6, 8, 10], [12, 14, 16], [18]]


def test_link_receives_the_result_and_link_error_the_failed_task_id(app, nodes):
    nodes.start()
    from testapp import add, errback_record, fail, mul

    callback = mul.s(10)
    callback.freeze()
    parent = add.apply_async((2, 2), link=callback)
    assert app.AsyncResult(callback.id).get(timeout=20) == 40
    assert parent.get(timeout=5) == 4

    errback = errback_record.s("extra")
    errback.freeze()
    failed = fail.apply_async(("oops",), link_error=errback)
    assert app.AsyncResult(errback.id).get(timeout=20) == {
        "task_id": failed.id, "exc_type": "ValueError", "exc_message": "oops",
        "task": "testapp.fail", "extra": ["extra"]}


def test_a_failing_task_fails_the_rest_of_its_chain_instead_of_hanging(app, nodes):
    nodes.start()
    from testapp import add, errback_record, fail

    errback = errback_record.s()
    errback.freeze()
    result = (add.s(1, 1) | fail.si("mid") | add.s(1)).apply_async(link_error=errback)
    with pytest.raises(ValueError, match="mid"):
        result.get(timeout=20)
    assert result.state == states.FAILURE
    assert result.parent.parent.get(timeout=5) == 2
    assert app.AsyncResult(errback.id).get(timeout=20)["task_id"] == result.parent.id


def test_a_chord_with_a_failing_header_fails_and_calls_the_body_errback(app, nodes):
    nodes.start()
    from testapp import errback_record, fail_if, xsum

    body = xsum.s()
    errback = errback_record.s()
    errback.freeze()
    body.link_error(errback)
    result = chord([fail_if.s(i, 3) for i in range(6)], body).delay()
    with pytest.raises(ValueError, match="bad value 3"):
        result.get(timeout=20)
    assert result.state == states.FAILURE
    header = result.parent
    told = app.AsyncResult(errback.id).get(timeout=20)
    assert told["task_id"] == header[3].id and told["exc_message"] == "bad value 3"
    assert header.get(timeout=20, propagate=False)[:3] == [0, 1, 2]


def test_a_hard_time_limit_in_the_main_process_calls_link_error(app, nodes):
    nodes.start()
    from testapp import add, errback_record, hard_limited

    errback = errback_record.s()
    errback.freeze()
    after = add.s(1)
    result = (hard_limited.signature((30,), time_limit=1) | after).apply_async(
        link_error=errback)
    with pytest.raises(TimeLimitExceeded):
        result.get(timeout=20)
    told = app.AsyncResult(errback.id).get(timeout=20)
    assert told["task_id"] == result.parent.id and told["exc_type"] == "TimeLimitExceeded"


def test_a_chain_task_lost_with_its_node_fails_the_rest_and_calls_link_error(app, nodes,
                                                                             tmp_path):
    from testapp import add, errback_record, sleep

    from fleet.exceptions import WorkerLostError
    from tests.support import wait_for

    doomed = nodes.start(name="doomed")
    marker = str(tmp_path / "running")
    errback = errback_record.s()
    errback.freeze()
    running = sleep.signature((60, marker), track_started=True)
    result = (running | add.s(1)).apply_async(link_error=errback)
    # STARTED is stored in the same commit as the broker's "started" mark: once it is visible,
    # the task counts as running (reported lost), not as prefetched (requeued and re-run).
    wait_for(lambda: result.parent.state == states.STARTED, 20, message="the task to start")
    doomed.kill_group()  # SIGKILL: the task was early-acked, so it is reported, not re-run
    nodes.start(name="rescuer")  # recovers the dead node's messages and reports the lost task
    with pytest.raises(WorkerLostError):
        result.get(timeout=20)
    told = app.AsyncResult(errback.id).get(timeout=20)
    assert told["task_id"] == result.parent.id and told["exc_type"] == "WorkerLostError"


def test_revoking_a_group_revokes_every_task_and_fails_a_chord_waiting_on_it(app, nodes):
    node = nodes.start()
    from testapp import add, xsum

    from fleet.exceptions import TaskRevokedError
    from tests.support import wait_for

    # Revoke once the node holds the tasks for their ETA: a revoke settles held tasks at
    # once, while tasks still in the broker are refused only when they come due.
    def held(result) -> bool:
        return all(f"[{r.id}] received" in node.log_text() for r in result)

    waiting = group(add.s(i, i) for i in range(3)).apply_async(countdown=30)
    wait_for(lambda: held(waiting), 20, message="the node to hold the tasks")
    waiting.revoke()
    values = waiting.get(timeout=20, propagate=False)
    assert [type(value) for value in values] == [TaskRevokedError] * 3
    assert all(meta.state == states.REVOKED for meta in waiting)

    chorded = chord([add.s(1, 1), add.s(2, 2)], xsum.s()).apply_async(countdown=30)
    wait_for(lambda: held(chorded.parent), 20, message="the node to hold the header")
    chorded.parent.revoke()
    with pytest.raises(TaskRevokedError):
        chorded.get(timeout=20)


# == a broker error while a child sends the follow-ups ===========================================
# Regression: the child only logged the error, so the chain or chord waited forever. Now the
# node takes the follow-up over (and retries it until the result store answers).

@pytest.mark.parametrize("method", ["incr", "add_value", "set_values"])
def test_a_chord_header_meeting_a_store_error_still_fires_the_body_once(app, nodes, method):
    nodes.start(concurrency=1)
    from testapp import add, store_trouble, xsum

    header = [store_trouble.s(1, method)] + [add.s(i, 0) for i in range(2, 5)]
    result = chord(header, xsum.s()).delay()
    assert result.get(timeout=20) == 1 + 2 + 3 + 4


def test_a_failing_chain_task_meeting_a_store_error_still_fails_the_rest(app, nodes):
    nodes.start(concurrency=1)
    from testapp import add, store_trouble

    result = (store_trouble.s(7, "set_values", fail=True) | add.s(1) | add.s(2)).delay()
    with pytest.raises(ValueError, match="failed on purpose"):
        result.get(timeout=20)
    assert result.parent.state == states.FAILURE


def test_an_unknown_task_in_a_workflow_fails_the_rest_instead_of_hanging(app, nodes):
    # Regression: a dead-lettered task (unknown to the node) was never followed up: the rest
    # of its chain stayed PENDING and a chord over it never fired nor failed.
    nodes.start()
    from testapp import add, xsum

    unknown = signature("testapp.no_such_task", app=app)
    result = (add.s(1, 1) | unknown | add.s(1)).delay()
    with pytest.raises(NotRegistered):
        result.get(timeout=20)
    assert result.parent.parent.get(timeout=5) == 2
    chorded = chord([add.s(1, 1), unknown.clone()], xsum.s()).delay()
    with pytest.raises(NotRegistered):
        chorded.get(timeout=20)
