"""Fixtures for tests with real nodes, run once per real broker (sqlite and redis)."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from tests.support import APPS, NodeFactory, fleet_env

if str(APPS) not in sys.path:
    sys.path.insert(0, str(APPS))

#: Short liveness settings so crash-recovery tests take seconds, not minutes.
FAST_RECOVERY = {"FLEET_WORKER_HEARTBEAT_INTERVAL": "0.2", "FLEET_WORKER_HEARTBEAT_TIMEOUT": "1.0"}


@pytest.fixture(params=["sqlite", "redis"])
def broker_url(request: pytest.FixtureRequest) -> str:
    """Every test using this runs on both real brokers."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def app(broker_url: str) -> Iterator:
    """The test app (tests/apps/testapp.py), pointed at the broker under test."""
    import testapp

    testapp.app.conf.update(broker_url=broker_url)
    testapp.app.close()
    yield testapp.app
    testapp.app.close()


@pytest.fixture
def nodes(broker_url: str, tmp_path) -> Iterator[NodeFactory]:
    """Start nodes with `nodes.start(...)`; all of them are killed after the test."""
    factory = NodeFactory(broker_url, tmp_path, env_extra=dict(FAST_RECOVERY))
    try:
        yield factory
    finally:
        factory.cleanup()


@pytest.fixture
def env(broker_url: str, tmp_path) -> dict[str, str]:
    """Environment for `fleet` CLI subprocesses against the broker under test."""
    return fleet_env(broker_url, FLEET_STATE_DIR=str(tmp_path / "state"))
