from __future__ import annotations

import pytest

from tests.unit.engine.node.fakes import close_node, make_app, make_node


@pytest.fixture
def app():
    app = make_app()
    yield app
    app.close()


@pytest.fixture
def node(app):
    node = make_node(app)
    yield node
    close_node(node)
