"""Rate limits: the rate strings, and the token bucket."""

from __future__ import annotations

import pytest

from fleet.engine.ratelimit import TokenBucket, parse_rate
from fleet.operator_errors import ConfigError


def test_rate_strings():
    assert parse_rate("10/s") == 10
    assert parse_rate("60/m") == 1
    assert parse_rate("3600/h") == 1
    assert parse_rate(None) == 0
    with pytest.raises(ConfigError, match="invalid rate limit"):
        parse_rate("10/day")
    bucket = TokenBucket(1000.0)
    assert bucket.take() and not bucket.take()
    assert 0 < bucket.wait_time() <= 0.001
