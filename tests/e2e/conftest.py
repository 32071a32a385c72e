"""End-to-end tests run the shipped files (contrib/, README flows) for real."""

from __future__ import annotations

import sys
from collections.abc import Iterator

import pytest

from tests.support import APPS

if str(APPS) not in sys.path:
    sys.path.insert(0, str(APPS))


@pytest.fixture
def app(sqlite_url: str) -> Iterator:
    import testapp

    testapp.app.conf.update(broker_url=sqlite_url)
    testapp.app.close()
    yield testapp.app
    testapp.app.close()
