"""Transports by URL: `sqlite://` (the default), `redis://`/`rediss://`/`unix://`, `memory://`.

`open_transport(url)` returns the implementation for the URL's scheme, importing it only then
(so a SQLite user never imports redis). The contract every one of them keeps is in `base.py`;
where they read the time, in `clock.py`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from fleet.operator_errors import ConfigError
from fleet.paths import default_broker_db

if TYPE_CHECKING:
    from fleet.engine.transport.base import Transport
    from fleet.engine.transport.clock import Clock

_SCHEMES = {
    "sqlite": "fleet.engine.transport.sqlite:SQLiteTransport",
    "redis": "fleet.engine.transport.redis:RedisTransport",
    "rediss": "fleet.engine.transport.redis:RedisTransport",
    "unix": "fleet.engine.transport.redis:RedisTransport",
    "memory": "fleet.engine.transport.memory:MemoryTransport",
}


def default_broker_url() -> str:
    """The embedded SQLite broker used when no broker is configured."""
    return f"sqlite:///{default_broker_db()}"


def scheme_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def transport_module(url: str) -> str | None:
    """The module that implements `url`'s scheme (None for an unknown scheme), so a launcher
    can import it before forking nodes without opening a connection."""
    target = _SCHEMES.get(scheme_of(url))
    return target.partition(":")[0] if target else None


def open_transport(url: str, options: dict | None = None, *,
                   clock: Clock | None = None) -> Transport:
    """Return a transport for `url`; a bad URL is a `ConfigError` naming the valid schemes.

    `clock` is where the transport reads the time (default: real time; see `clock.py`)."""
    scheme = scheme_of(url)
    target = _SCHEMES.get(scheme)
    if target is None:
        valid = ", ".join(f"{name}://" for name in ("sqlite", "redis", "rediss", "unix", "memory"))
        raise ConfigError(
            f"unsupported broker URL {mask_url(url)!r}",
            f"use one of {valid}, e.g. sqlite:///path/to/fleet.db or redis://127.0.0.1:6379/0",
        )
    module_name, class_name = target.split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(url, options, clock)


def mask_url(url: str | None) -> str:
    """`redis://:secret@host/0` -> `redis://:********@host/0` (fleet.masking, whatever the
    password holds); other URLs unchanged."""
    from fleet.masking import mask_url as mask

    return mask(url)
