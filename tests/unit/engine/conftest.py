"""What the engine's unit tests share as fixtures: a real Node on a memory broker with a fake
pool (tests/unit/engine/node/fakes.py), closed after the test."""

from __future__ import annotations

import pytest

from tests.unit.engine.node.fakes import close_node, make_app, make_node


@pytest.fixture
def node():
    app = make_app()
    node = make_node(app)
    yield node
    close_node(node)
    app.close()
