"""Where a transport reads the time: a clock object, so tests move time instead of sleeping.

Every time a transport judges comes from its clock's `time()` (wall-clock seconds since the
epoch, like `time.time()`): a consumer's heartbeat and whether it has been silent longer than
the recovery timeout, a lease's expiry, whether a message's eta is due, a dead letter's `at`,
and the expiry of small values where the transport expires them itself (SQLite, memory).

* `SystemClock` (the default, `SYSTEM_CLOCK`) is real time. On Redis, real time is the
  *server's* clock: each script reads TIME itself, so nodes on hosts whose clocks disagree
  still agree on heartbeats, recovery, due times and leases. SQLite (one machine) and memory
  (one process) read `time.time()`.
* `ManualClock` moves only when told to (`advance`). A transport given one judges all of the
  above by it, on Redis too (each script then takes the time as an argument instead of reading
  TIME), so a test expires a heartbeat or a lease at once and exactly. Every transport
  object on one store must use the same clock: a manual clock is for tests in one process.

What no clock governs: how long anything *waits* (a `wait_value` timeout, a blocking read) is
real time; and Redis expires keys that carry a TTL (results, counters, notifications) on its
own clock, by itself, as it always has. A test of a Redis value's TTL still waits for it.
"""

from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """Anything with `time()`: wall-clock seconds since the epoch, as a float."""

    def time(self) -> float: ...


class SystemClock:
    """Real time (`time.time()`); on Redis, the server's clock (see the module docstring)."""

    def time(self) -> float:
        return time.time()

    def __repr__(self) -> str:
        return "SystemClock()"


#: The clock every transport uses unless it is given another.
SYSTEM_CLOCK = SystemClock()


class ManualClock:
    """A clock that stands still until `advance` moves it (thread-safe).

    It starts at `start` (default: the real time now, so timestamps look plausible) and never
    moves by itself: a test says how much time passes.
    """

    def __init__(self, start: float | None = None):
        self._now = time.time() if start is None else float(start)
        self._lock = threading.Lock()

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock `seconds` forward; return the new time. Time never goes back."""
        if seconds < 0:
            raise ValueError(f"a clock cannot go back in time (advance by {seconds})")
        with self._lock:
            self._now += seconds
            return self._now

    def __repr__(self) -> str:
        return f"ManualClock({self._now!r})"
