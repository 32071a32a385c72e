"""Choosing a transport by URL (fleet/engine/transport/__init__.py)."""

from __future__ import annotations

import pytest

from fleet.engine.transport import (
    default_broker_url,
    mask_url,
    open_transport,
    scheme_of,
    transport_module,
)
from fleet.engine.transport.clock import ManualClock
from fleet.engine.transport.memory import MemoryTransport
from fleet.engine.transport.redis import RedisTransport
from fleet.engine.transport.sqlite import SQLiteTransport
from fleet.operator_errors import ConfigError


@pytest.mark.parametrize(("url", "kind"), [
    ("memory://x", MemoryTransport), ("redis://127.0.0.1:1/0", RedisTransport),
    ("rediss://127.0.0.1:1/0", RedisTransport), ("unix:///tmp/r.sock", RedisTransport),
])
def test_the_scheme_picks_the_transport(url, kind):
    assert isinstance(open_transport(url), kind)


def test_sqlite_is_the_default_broker(tmp_path):
    assert default_broker_url().startswith("sqlite:///")
    assert isinstance(open_transport(f"sqlite:///{tmp_path / 'b.db'}"), SQLiteTransport)


def test_an_unknown_scheme_names_the_valid_ones_without_the_password():
    with pytest.raises(ConfigError) as caught:
        open_transport("amqp://user:pw@host//")

    text = caught.value.one_line()
    assert "sqlite://" in text and "redis://" in text and ":pw@" not in text


def test_the_clock_reaches_the_transport():
    clock = ManualClock()

    assert open_transport("memory://clock", clock=clock).clock is clock
    assert open_transport("redis://127.0.0.1:1/0", clock=clock).clock is clock


def test_the_module_of_a_scheme_is_known_without_importing_it():
    assert transport_module("redis://h/0") == "fleet.engine.transport.redis"
    assert transport_module("sqlite:///x.db") == "fleet.engine.transport.sqlite"
    assert transport_module("nope://x") is None
    assert scheme_of("no scheme") == ""


@pytest.mark.parametrize(("url", "masked"), [
    ("redis://:secret@h:6379/0", "redis://:********@h:6379/0"),
    ("redis://user:secret@h/0", "redis://user:********@h/0"),
    ("redis://h/0?password=secret&db=1", "redis://h/0?password=********&db=1"),
    ("sqlite:///x.db", "sqlite:///x.db"),
    (None, ""),
])
def test_passwords_are_masked(url, masked):
    assert mask_url(url) == masked
