"""The jobs a node holds: the ETA heap, and taking jobs out (shutdown, revokes)."""

from __future__ import annotations

import collections
import time

from fleet.engine.node.jobs import Jobs, first
from tests.unit.engine.node.fakes import job


def test_held_jobs_come_out_in_eta_order_once_due(app):
    jobs = Jobs()
    now = time.time()
    later, sooner, future = job(app, "fast", 1), job(app, "fast", 2), job(app, "fast", 3)
    jobs.hold_until(later, now - 1)
    jobs.hold_until(sooner, now - 2)
    jobs.hold_until(future, now + 60)
    jobs.release_due()
    assert list(jobs.buffer) == [sooner, later]
    assert [entry[2] for entry in jobs.scheduled] == [future]
    assert sooner.due <= time.monotonic()


def test_taking_unstarted_jobs_empties_every_place_they_wait(app):
    jobs = Jobs()
    ready, held, throttled = job(app, "fast", 1), job(app, "fast", 2), job(app, "slow", 3)
    jobs.buffer.append(ready)
    jobs.hold_until(held, time.time() + 60)
    jobs.throttled["units.slow"] = collections.deque([throttled])
    assert jobs.waiting() == [throttled]
    assert [where for where, _ in jobs.held()] == ["reserved", "scheduled"]
    assert jobs.take_unstarted() == [ready, held, throttled]
    assert not (jobs.buffer or jobs.scheduled or jobs.throttled)


def test_taking_held_jobs_by_task_id_keeps_the_others_in_order(app):
    jobs = Jobs()
    one, two, three = job(app, "fast", 1), job(app, "fast", 2), job(app, "fast", 3)
    jobs.buffer.extend([one, two])
    jobs.hold_until(three, time.time() + 60)
    assert jobs.take_held([two.message.id, three.message.id, "unknown"]) == [two, three]
    assert list(jobs.buffer) == [one] and jobs.scheduled == []


def test_an_option_falls_back_to_the_first_value_that_is_set():
    assert first(None, False, True) is False
    assert first(None, None) is None
