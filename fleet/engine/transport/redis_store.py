"""The Redis transport's client, keys, scripts and clock (the `Connection` part).

The key layout and how reservations are recovered are documented at the top of `redis.py`.
This module owns what every other part uses: the redis-py client of this process (a forked
child builds its own), key names under the prefix, running the Lua scripts (loading them again
when the server lost them), and the time the scripts judge by.

The clock: with the default, real-time clock every script reads the server's TIME, so nodes
on hosts whose clocks disagree still agree; with any other clock (a test's `ManualClock`) the
scripts take its time as a leading argument instead (`script_args`). The two variants of a
script differ only in the line that sets the clock (see `redis_scripts`), so a test clock
exercises the very code production runs.

redis-py retries failed commands by default; this transport turns that off (unless the
options pass a `retry`), because re-running a script whose reply was lost would reserve or
count twice. Errors propagate and the worker reconnects.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from fleet.engine.transport.base import Transport
from fleet.engine.transport.clock import Clock, SystemClock
from fleet.engine.transport.redis_adapter import DirectConnection, check_client_options
from fleet.engine.transport.redis_scripts import Scripts, scripts
from fleet.exceptions import BrokerDataError, BrokerUnavailable
from fleet.operator_errors import ConfigError

logger = logging.getLogger("fleet.engine.transport.redis")

CONNECTION_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


class RedisStore(Transport):
    """One Redis database (and key prefix): client, keys, scripts and clock."""

    schemes = ("redis", "rediss", "unix")
    transient_errors = (*CONNECTION_ERRORS, BrokerUnavailable)
    data_errors = (redis.exceptions.ResponseError, redis.exceptions.DataError,
                   BrokerDataError)

    def __init__(self, url: str, options: dict | None = None, clock: Clock | None = None):
        super().__init__(url, options, clock)
        client_options = dict(self.options)
        self.prefix = str(client_options.pop("prefix", "fleet"))
        self.connect_timeout = float(client_options.pop("connect_timeout", 4.0))
        client_options.setdefault("retry", Retry(NoBackoff(), 0))
        # Bytes that are not UTF-8 (written by something else than fleet) come back as
        # surrogates instead of failing a whole reply halfway, and go back out unchanged
        # (a dead letter keeps the exact body); the message codec refuses them.
        client_options.setdefault("encoding_errors", "surrogateescape")
        self._client_options = client_options
        #: Real time is the server's clock (TIME in the scripts); see the module docstring.
        self._server_clock = isinstance(self.clock, SystemClock)
        self._scripts_loaded = False
        self._tokens = itertools.count()
        self._token_base = secrets.token_hex(3)
        #: (consumer id, token) of reserve calls whose outcome is unknown; see `reserve`.
        self._rollbacks: list[tuple[str, str]] = []
        # Built now, so a bad URL or option fails at open; reconnects lazily on first use.
        self._client: redis.Redis | None = self._connect()
        self._pid = os.getpid()
        #: The connection `submit` sends on and reads from (a node's hot path).
        self._hot: DirectConnection | None = None
        #: The connection a lone `put` uses (a client's hot path), and its lock; see `put`.
        self._producer: DirectConnection | None = None
        self._producer_lock = threading.Lock()

    @property
    def client(self) -> redis.Redis:
        """The client of this process: a forked child gets its own connections.

        No lock: two threads racing on first use may each build a client and one is
        dropped, which is harmless, while a lock held at fork time would hang the child.
        """
        client = self._client
        if self._pid != os.getpid() or client is None:
            client = self._connect()
            self._client, self._pid = client, os.getpid()
            self._scripts_loaded = False
            self._rollbacks = []
            self._hot = None
            self._producer, self._producer_lock = None, threading.Lock()
        return client

    def _connect(self) -> redis.Redis:
        """A client (no connection is made until first use); a bad URL or an option
        redis-py does not know is a ConfigError."""
        try:
            client = redis.Redis.from_url(self.url, decode_responses=True,
                                          socket_connect_timeout=self.connect_timeout,
                                          **self._client_options)
            check_client_options(client)
            return client
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"invalid Redis broker URL or option for {self.describe()}: {exc}",
                "check broker_url and broker_transport_options (prefix, connect_timeout, "
                "and any redis-py client option such as socket_keepalive)",
            ) from None

    def ping(self) -> None:
        try:
            self.client.ping()
        except redis.exceptions.RedisError as exc:
            cause = " ".join(str(exc).split()) or type(exc).__name__
            raise BrokerUnavailable(
                f"cannot reach the Redis broker at {self.describe()}: {cause}",
                "check that redis-server is running and that the URL's host, port, "
                "password and database are right",
            ) from exc

    def close(self) -> None:
        hot, self._hot = self._hot, None
        producer, self._producer = self._producer, None
        for connection in (hot, producer):
            if connection is not None and self._pid == os.getpid():
                connection.disconnect()
        client, self._client = self._client, None
        if client is not None and self._pid == os.getpid():
            client.close()
        self._pid = 0

    def _key(self, *parts: str) -> str:
        return ":".join((self.prefix, *parts))

    # -- time -------------------------------------------------------------------------------

    def now(self, pipe: redis.client.Pipeline) -> float | None:
        """The clock's time; with the server's clock, None after queueing TIME on `pipe`
        (the caller takes it from the pipeline's first reply: no extra round trip)."""
        if self._server_clock:
            pipe.time()
            return None
        return float(self.clock.time())

    # -- scripts ------------------------------------------------------------------------------

    def script_args(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> tuple:
        """EVALSHA's arguments for script `name`: digest, keys, then `args`, with the time
        before them unless the server's clock is in force (its variant reads TIME)."""
        sha = self._scripts().sha[name]
        if self._server_clock:
            return (sha, len(keys), *keys, *args)
        return (sha, len(keys), *keys, repr(float(self.clock.time())), *args)

    def _scripts(self) -> Scripts:
        """The scripts of this transport's kind of clock (read once per process)."""
        return scripts(clock_passed=not self._server_clock)

    def _call(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run one script (EVALSHA), loading the scripts first when the server lacks them."""
        return self._with_scripts(lambda: self.client.evalsha(
            *self.script_args(name, keys, args)))

    def _ensure_scripts(self) -> None:
        if not self._scripts_loaded:
            self._scripts().load(self.client)
            self._scripts_loaded = True

    def _reload_scripts(self) -> None:
        logger.info("Redis at %s lost fleet's scripts; loading them again", self.describe())
        self._scripts().load(self.client)

    def _with_scripts(self, action: Callable[[], Any]) -> Any:
        """Run `action`; on NOSCRIPT (server restarted or SCRIPT FLUSH) load and run again.

        Safe to repeat: a NOSCRIPT reply means none of our scripts ran in `action` (they
        are loaded in one transaction and `action` is one command or one MULTI/EXEC), and
        plain commands sent with them (SET of results) are idempotent.
        """
        self._ensure_scripts()
        try:
            return action()
        except redis.exceptions.NoScriptError:
            self._reload_scripts()
            return action()
