"""Routing: explicit queue > task_routes > the task's own queue > the default."""

from __future__ import annotations

from fleet import Fleet
from fleet.engine.routing import route


def test_routing_precedence():
    app = Fleet("p", task_routes={"p.exact": "exact-q", "p.img_*": "images"})

    @app.task(queue="own")
    def owned():
        return None

    assert route(app, "p.exact") == "exact-q"
    assert route(app, "p.img_resize") == "images"
    assert route(app, "p.other") == "default"
    assert route(app, "p.exact", queue="explicit") == "explicit"
    assert route(app, owned.name, task=owned) == "own"
    app.conf.update(task_routes=[lambda name: "fn-q" if name.endswith("x") else None,
                                 {"*": "catch-all"}])
    assert route(app, "p.x") == "fn-q"
    assert route(app, "p.y") == "catch-all"
