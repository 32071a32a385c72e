"""What the engine's unit tests share: a small app on a private memory broker, and the
messages it sent."""

from __future__ import annotations

import uuid

from fleet import Fleet
from fleet.engine import message as codec


def make_app(main: str = "t") -> Fleet:
    """An app on its own memory broker with three tasks: t.add, t.mul and t.xsum."""
    app = Fleet(main, broker=f"memory://{uuid.uuid4().hex}")

    @app.task(name="t.add")
    def add(x, y):
        return x + y

    @app.task(name="t.mul")
    def mul(x, y):
        return x * y

    @app.task(name="t.xsum")
    def xsum(numbers):
        return sum(numbers)

    return app


def tasks(app: Fleet) -> tuple:
    return app.tasks["t.add"], app.tasks["t.mul"], app.tasks["t.xsum"]


def sent(app: Fleet, queue: str = "default") -> list:
    """Every message put on `queue`, decoded, in order."""
    return [codec.decode(d.body) for d in app.broker.reserve("test", [queue], 1000, 3600)]
