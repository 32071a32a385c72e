"""The Redis transport's client options, keys and clock (no server needed: the client
connects only on first use)."""

from __future__ import annotations

import pytest

from fleet.engine.transport import open_transport
from fleet.engine.transport.clock import SYSTEM_CLOCK, ManualClock, SystemClock
from fleet.engine.transport.redis_scripts import scripts
from fleet.operator_errors import ConfigError

URL = "redis://127.0.0.1:1/0"


def test_with_the_real_clock_the_scripts_read_the_servers_time_and_take_no_extra_argument():
    transport = open_transport(URL)

    assert transport.clock is SYSTEM_CLOCK
    assert transport.script_args("reserve", ["fleet"], ["c#1", 8]) == (
        scripts(clock_passed=False).sha["reserve"], 1, "fleet", "c#1", 8)


def test_any_system_clock_means_the_servers_time():
    transport = open_transport(URL, clock=SystemClock())
    pipe = transport.client.pipeline()

    assert transport.script_args("purge", ["p"], ["q", 5])[-2:] == ("q", 5)
    assert transport.now(pipe) is None  # TIME is queued on the pipeline instead
    assert len(pipe.command_stack) == 1


def test_with_a_test_clock_the_scripts_get_its_time_first_exactly():
    clock = ManualClock(start=1_700_000_000.125)
    transport = open_transport(URL, clock=clock)

    assert transport.script_args("reserve", ["fleet"], ["c#1", 8]) == (
        scripts(clock_passed=True).sha["reserve"], 1, "fleet", "1700000000.125", "c#1", 8)
    clock.advance(0.25)
    assert float(transport.script_args("lease", ["k"], [])[3]) == 1_700_000_000.375
    assert transport.now(transport.client.pipeline()) == 1_700_000_000.375


def test_prefix_and_connect_timeout_are_ours_the_rest_go_to_redis_py():
    transport = open_transport(URL, {"prefix": "blue", "connect_timeout": 1.5,
                                     "client_name": "x"})
    kwargs = transport.client.connection_pool.connection_kwargs

    assert transport.prefix == "blue" and transport._key("q", "a") == "blue:q:a"
    assert kwargs["socket_connect_timeout"] == 1.5
    assert kwargs["client_name"] == "x"
    assert "prefix" not in kwargs


def test_redis_py_retries_are_off_unless_asked_for():
    """A retried script whose reply was lost would reserve or count twice."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    retry = open_transport(URL).client.connection_pool.connection_kwargs["retry"]
    calls = []

    def fail() -> None:
        calls.append(1)
        raise RedisConnectionError("gone")

    with pytest.raises(RedisConnectionError):
        retry.call_with_retry(fail, lambda error: None)
    assert calls == [1]


def test_a_bad_url_is_a_config_error_at_open():
    with pytest.raises(ConfigError, match="invalid Redis broker URL"):
        open_transport("redis://127.0.0.1:notaport/0")


def test_a_forked_child_would_build_its_own_client(monkeypatch):
    transport = open_transport(URL)
    first = transport.client

    monkeypatch.setattr("os.getpid", lambda: transport._pid + 1)

    assert transport.client is not first
