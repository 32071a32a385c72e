"""The built-in map and starmap tasks behind task.map, starmap and chunks."""

from __future__ import annotations

import pytest

from fleet.engine.canvas import Group
from tests.unit.engine.support import make_app, tasks


@pytest.fixture
def app():
    app = make_app()
    yield app
    app.close()


def test_map_starmap_and_chunks_are_signatures_of_builtin_tasks(app):
    add, _, xsum = tasks(app)
    assert xsum.map([[1, 2], [3]]).args == ("t.xsum", [[1, 2], [3]])
    assert add.starmap([(1, 2)]).task == "fleet.starmap"
    chunked = add.chunks([(i, i) for i in range(5)], 2)
    assert isinstance(chunked, Group) and [t.args[1] for t in chunked.tasks] == \
        [[[0, 0], [1, 1]], [[2, 2], [3, 3]], [[4, 4]]]
    assert app.tasks["fleet.starmap"]("t.add", [[1, 2], [3, 4]]) == [3, 7]
    assert "fleet.map" not in set(app.tasks)  # found by name, never listed
    with pytest.raises(ValueError, match="at least 1"):
        add.chunks([], 0)
