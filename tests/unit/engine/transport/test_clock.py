"""Where transports read the time: the real clock by default, a manual one for tests."""

from __future__ import annotations

import threading
import time

import pytest

from fleet.engine.transport import open_transport
from fleet.engine.transport.clock import SYSTEM_CLOCK, Clock, ManualClock, SystemClock


def test_the_system_clock_is_real_time():
    before = time.time()
    now = SYSTEM_CLOCK.time()

    assert before <= now <= time.time()
    assert isinstance(SYSTEM_CLOCK, SystemClock)


def test_a_manual_clock_stands_still_until_advanced():
    clock = ManualClock(start=1000.0)

    assert clock.time() == clock.time() == 1000.0
    assert clock.advance(2.5) == 1002.5
    assert clock.time() == 1002.5


def test_a_manual_clock_starts_at_the_real_time_by_default():
    before = time.time()

    assert before <= ManualClock().time() <= time.time()


def test_a_manual_clock_never_goes_back():
    clock = ManualClock(start=10.0)

    with pytest.raises(ValueError, match="cannot go back"):
        clock.advance(-1)
    assert clock.time() == 10.0


def test_advances_from_many_threads_all_count():
    clock = ManualClock(start=0.0)

    def advance() -> None:
        for _ in range(1000):
            clock.advance(1)

    threads = [threading.Thread(target=advance) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert clock.time() == 4000.0


def test_any_object_with_time_is_a_clock_for_a_transport():
    class Frozen:
        def time(self) -> float:
            return 42.0

    frozen: Clock = Frozen()
    transport = open_transport("memory://clock-protocol", clock=frozen)

    assert transport.clock is frozen
    assert open_transport("memory://clock-default").clock is SYSTEM_CLOCK
