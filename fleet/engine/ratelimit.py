"""Rate limits per task and node ('10/s', '100/m', '1000/h', or a number per second).

A token bucket per task name in the node's main process: a task over its rate waits in the
node (it is not sent back to the broker) until a token is available.
"""

from __future__ import annotations

import time

from fleet.operator_errors import ConfigError

_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(rate: str | float | int | None) -> float:
    """Tasks per second; 0 means no limit."""
    if rate is None or rate in ("", 0):
        return 0.0
    if isinstance(rate, int | float):
        value, unit = float(rate), "s"
    else:
        text = str(rate).strip()
        number, _, unit = text.partition("/")
        unit = unit or "s"
        try:
            value = float(number)
        except ValueError:
            value = -1.0
        if unit not in _UNITS or value < 0:
            raise ConfigError(f"invalid rate limit {rate!r}",
                              "write a number per s, m or h, e.g. '10/s', '100/m', '5/h'")
    return value / _UNITS[unit]


class TokenBucket:
    """Allows `rate` events per second on average, bursting up to `capacity`."""

    __slots__ = ("capacity", "rate", "stamp", "tokens")

    def __init__(self, rate: float, capacity: float = 1.0):
        self.rate = rate
        self.capacity = max(capacity, 1.0)
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def _refill(self) -> None:
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now

    def take(self) -> bool:
        self._refill()
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait_time(self) -> float:
        """Seconds until a token is available."""
        self._refill()
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate
