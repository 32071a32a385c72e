"""The one place fleet reaches below redis-py's client API.

fleet's hot paths need two things redis-py's `Redis` client and its pipelines do not offer:

* **Send now, read later.** A node writes a batch of acks and a reserve in one send and reads
  the replies only when its selector says they have arrived (`RedisTransport.submit`), and a
  client writes a whole `put` in one send. `Pipeline.execute` sends *and* blocks for the
  replies, so `DirectConnection` drives a redis-py connection of its own (made by the
  client's pool, never returned to it) through the connection-level calls
  `send_packed_command`, `pack_commands`, `read_response`, `can_read`, `connect` and
  `disconnect`: public methods, documented as low-level.
* **A descriptor to wait on.** The node's loop waits on its children's pipes, a submit's
  reply and its pub/sub connection at once, with one selector. redis-py exposes no socket:
  `socket_of` reads the connection's private `_sock` attribute (None when not connected).
  That attribute is the only private one used, and only here.

`check_client_options` builds one connection object from the pool's `connection_class` and
`connection_kwargs` (public attributes) so an option redis-py does not know fails when the
transport is opened, not at its first command; and it refuses client-side caching, whose
proxy connections have no `_sock`.

Tested with redis-py 5.0.8, 5.3.1, 6.4.0, 7.4.1 and 8.1.0 (the first and latest of 5, the
latest of each later major; the `redis` requirement in pyproject.toml is pinned to majors 5
to 8). In all of them a TCP, TLS or unix-socket connection keeps its socket in `_sock`.
Before allowing a new major, run tests/unit/engine/transport/test_redis_adapter.py and the
Redis integration tests against it.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import redis

from fleet.operator_errors import ConfigError

_CONNECTION_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def socket_of(connection: Any) -> socket.socket | None:
    """The socket of a redis-py connection, or None when it is not connected."""
    return connection._sock  # private: redis-py has no public accessor (see module docstring)


def fileno_of(connection: Any) -> int | None:
    """The descriptor of a redis-py connection's socket, or None when it is not connected."""
    sock = socket_of(connection) if connection is not None else None
    return sock.fileno() if sock is not None else None


def pubsub_fileno(pubsub: redis.client.PubSub) -> int | None:
    """The descriptor a `PubSub` receives on (None before it subscribed or after a drop)."""
    return fileno_of(pubsub.connection)


def pubsub_has_data(pubsub: redis.client.PubSub) -> bool:
    """True if the `PubSub` connection has something to read right now (never blocks)."""
    return bool(pubsub.connection.can_read(timeout=0))


def check_client_options(client: redis.Redis) -> None:
    """Raise TypeError for an option the connection class does not take; ConfigError for
    client-side caching, which this transport cannot drive (see the module docstring)."""
    pool = client.connection_pool
    if getattr(pool, "cache", None) is not None:
        raise ConfigError(
            "client-side caching (redis-py's cache/cache_config options) is not supported "
            "by fleet's Redis transport",
            "remove cache and cache_config from broker_transport_options")
    # The pool passes options on only when it connects: build one connection object (no
    # socket) so a misspelt option fails now.
    pool.connection_class(**pool.connection_kwargs)


class DirectConnection:
    """A connection of our own to the client's server: write now, read the replies later.

    Replies come back in the order the commands were sent; the caller reads exactly one per
    command (`read_reply`). After any error in between, `disconnect`: a reply may still be on
    its way, so the connection must not be reused as it is.
    """

    def __init__(self, client: redis.Redis):
        self._connection = client.connection_pool.make_connection()

    def fileno(self) -> int | None:
        """The socket's descriptor (readable once a reply has arrived), or None."""
        return fileno_of(self._connection)

    @property
    def connected(self) -> bool:
        return socket_of(self._connection) is not None

    def connect(self) -> None:
        """Connect (and authenticate, select the database) unless connected already."""
        if not self.connected:
            self._connection.connect()

    def drop_if_stale(self) -> None:
        """Disconnect if the server closed the connection while it was idle (restart, idle
        timeout): an idle connection with something to read is dead. The next send
        connects afresh."""
        if not self.connected:
            return
        try:
            stale = self._connection.can_read(timeout=0)
        except (*_CONNECTION_ERRORS, OSError):
            stale = True
        if stale:
            self._connection.disconnect()

    def send_packed(self, packed: bytes) -> None:
        """Write commands already in the Redis protocol (RESP), connecting if need be."""
        self._connection.send_packed_command([packed], check_health=False)

    def send_commands(self, commands: Sequence[Sequence[Any]]) -> None:
        """Pack `commands` (tuples of arguments) and write them in one go."""
        connection = self._connection
        connection.send_packed_command(connection.pack_commands(commands), check_health=False)

    def read_reply(self) -> Any:
        """Read the next reply; an error reply is raised as redis-py's ResponseError."""
        return self._connection.read_response()

    def disconnect(self) -> None:
        self._connection.disconnect()
