"""HTTP-level protections around the whole dashboard (a pure ASGI middleware).

* Host check: without logins the dashboard answers only requests addressed to a loopback
  name, so a web page whose DNS name was rebound to 127.0.0.1 cannot read it.
* Origin check: a state-changing request that says it comes from another origin is refused
  before anything else runs (the CSRF token is checked as well, in the endpoints).
* Headers on every response: a Content-Security-Policy that allows only the dashboard's own
  scripts and styles (no inline script, no CDN), no framing, no MIME sniffing, no referrer
  leaving the dashboard, and no caching of anything but the static files.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlsplit

from fleet.dashboard.settings import LOOPBACK_NAMES, is_loopback

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

SAFE_METHODS = ("GET", "HEAD", "OPTIONS")
HEADERS = [
    (b"content-security-policy",
     b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
     b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
]


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key == name:
            return value.decode("latin-1")
    return None


def host_name(host: str) -> str:
    """'127.0.0.1:5555' -> '127.0.0.1'; '[::1]:5555' -> '::1'."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


class Protect:
    """Wraps the app: host and origin checks, security headers (see the module docstring)."""

    def __init__(self, app: ASGIApp, logins: bool, static_prefix: str, state: Any = None):
        self.app = app
        self.state = state  #: the wrapped app's state (where the dashboard object lives)
        self.logins = logins
        self.static_prefix = static_prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        problem = self._problem(scope)
        if problem is not None:
            await _refuse(send, problem)
            return
        cached = scope["path"].startswith(self.static_prefix)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers") or [])
                headers += HEADERS
                if not cached:
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)

    def _problem(self, scope: Scope) -> str | None:
        host = _header(scope, b"host") or ""
        if not self.logins:
            name = host_name(host).lower()
            if not (name in LOOPBACK_NAMES or is_loopback(name)):
                return (f"this dashboard has no logins and answers only at a loopback "
                        f"address (127.0.0.1, localhost), not at {host or 'an empty host'}")
        origin = _header(scope, b"origin")
        foreign = bool(origin) and (origin == "null" or
                                    urlsplit(origin or "").netloc.lower() != host.lower())
        if scope["method"] not in SAFE_METHODS and foreign:
            return f"refused a {scope['method']} from another origin ({origin})"
        return None


async def _refuse(send: Send, problem: str) -> None:
    body = json.dumps({"error": problem}).encode()
    await send({"type": "http.response.start", "status": 403,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()), *HEADERS]})
    await send({"type": "http.response.body", "body": body})
