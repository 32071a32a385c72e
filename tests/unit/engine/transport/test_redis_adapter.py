"""The redis-py adapter against the installed redis-py, without a Redis server: a tiny
in-process server on a unix socket speaks just enough of the protocol (RESP) for the
connection-level calls the adapter makes. Run this file against every redis-py major
version pyproject.toml allows (see fleet/engine/transport/redis_adapter.py)."""

from __future__ import annotations

import contextlib
import select
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from fleet.engine.transport.redis_adapter import (
    DirectConnection,
    check_client_options,
    fileno_of,
    pubsub_fileno,
    pubsub_has_data,
    socket_of,
)
from fleet.operator_errors import ConfigError


def _bulk(text: str) -> bytes:
    data = text.encode()
    return b"$%d\r\n%s\r\n" % (len(data), data)


class FakeServer:
    """Answers each command: ECHO x -> x, FAIL -> an error reply, SUBSCRIBE ch ->
    the subscribe confirmation, anything else (the handshake redis-py sends) -> OK."""

    def __init__(self, path: Path):
        self.path = path
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(str(path))
        self.listener.listen()
        self.clients: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.clients.append(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        buffer = b""
        with contextlib.suppress(OSError):
            while data := client.recv(65536):
                buffer += data
                while (parsed := self._parse(buffer)) is not None:
                    command, buffer = parsed
                    client.sendall(self._reply(command))

    @staticmethod
    def _parse(buffer: bytes) -> tuple[list[str], bytes] | None:
        """One complete command (an array of bulk strings) off the buffer, or None."""
        if b"\r\n" not in buffer:
            return None
        head, rest = buffer.split(b"\r\n", 1)
        args = []
        for _ in range(int(head[1:])):
            if b"\r\n" not in rest:
                return None
            size_line, rest = rest.split(b"\r\n", 1)
            size = int(size_line[1:])
            if len(rest) < size + 2:
                return None
            args.append(rest[:size].decode())
            rest = rest[size + 2:]
        return args, rest

    @staticmethod
    def _reply(command: list[str]) -> bytes:
        name = command[0].upper()
        if name == "ECHO":
            return _bulk(command[1])
        if name == "FAIL":
            return b"-ERR boom\r\n"
        if name == "SUBSCRIBE":
            return b"".join(b"*3\r\n" + _bulk("subscribe") + _bulk(ch) + b":1\r\n"
                            for ch in command[1:])
        return b"+OK\r\n"

    def publish(self, channel: str, data: str) -> None:
        for client in self.clients:
            client.sendall(b"*3\r\n" + _bulk("message") + _bulk(channel) + _bulk(data))

    def drop_clients(self) -> None:
        """Close every connection, as a server restart or an idle timeout would."""
        for client in self.clients:
            with contextlib.suppress(OSError):
                client.shutdown(socket.SHUT_RDWR)
            client.close()
        self.clients.clear()

    def close(self) -> None:
        self.listener.close()
        self.drop_clients()


@pytest.fixture
def server(tmp_path: Path) -> Iterator[FakeServer]:
    fake = FakeServer(tmp_path / "redis.sock")
    yield fake
    fake.close()


@pytest.fixture
def client(server: FakeServer) -> Iterator[redis.Redis]:
    # RESP2 (redis-py 8 defaults to RESP3, whose handshake the fake does not speak).
    made = redis.Redis(unix_socket_path=str(server.path), decode_responses=True,
                       socket_timeout=5, protocol=2)
    yield made
    made.close()


def readable(fd: int | None, timeout: float = 5.0) -> bool:
    assert fd is not None
    return bool(select.select([fd], [], [], timeout)[0])


def test_a_new_connection_is_not_connected_and_has_no_descriptor(client):
    connection = DirectConnection(client)

    assert not connection.connected
    assert connection.fileno() is None


def test_commands_sent_now_are_read_when_their_socket_is_readable(client):
    connection = DirectConnection(client)
    connection.connect()
    fd = connection.fileno()

    connection.send_commands([("ECHO", "first"), ("ECHO", "second")])

    assert readable(fd)
    assert [connection.read_reply(), connection.read_reply()] == ["first", "second"]
    assert connection.fileno() == fd  # still the same connection


def test_packed_commands_are_sent_as_they_are_and_connect_if_need_be(client):
    connection = DirectConnection(client)

    connection.send_packed(b"*2\r\n" + _bulk("ECHO") + _bulk("raw"))

    assert connection.connected
    assert connection.read_reply() == "raw"


def test_an_error_reply_is_raised_as_a_response_error(client):
    connection = DirectConnection(client)
    connection.send_commands([("FAIL",), ("ECHO", "after")])

    with pytest.raises(redis.exceptions.ResponseError, match="boom"):
        connection.read_reply()
    assert connection.read_reply() == "after"


def test_a_connection_the_server_closed_while_idle_is_dropped_then_made_afresh(client, server):
    connection = DirectConnection(client)
    connection.connect()
    connection.drop_if_stale()
    assert connection.connected  # alive and idle: kept

    server.drop_clients()
    assert readable(connection.fileno())  # the close is what there is to read
    connection.drop_if_stale()

    assert not connection.connected
    connection.send_commands([("ECHO", "again")])
    assert connection.read_reply() == "again"


def test_disconnect_forgets_the_socket(client):
    connection = DirectConnection(client)
    connection.connect()

    connection.disconnect()

    assert connection.fileno() is None and not connection.connected


def test_the_socket_of_a_pool_connection_is_its_descriptor(client):
    pooled = client.connection_pool.make_connection()
    assert socket_of(pooled) is None and fileno_of(pooled) is None and fileno_of(None) is None

    pooled.connect()

    assert fileno_of(pooled) == socket_of(pooled).fileno()
    pooled.disconnect()


def test_a_pubsub_descriptor_becomes_readable_when_a_message_arrives(client, server):
    pubsub = client.pubsub()
    assert pubsub_fileno(pubsub) is None  # not subscribed: no connection yet

    pubsub.subscribe("ch")
    assert pubsub.get_message(timeout=5)["type"] == "subscribe"
    fd = pubsub_fileno(pubsub)
    assert fd is not None and not pubsub_has_data(pubsub)

    server.publish("ch", "hello")

    assert readable(fd) and pubsub_has_data(pubsub)
    assert pubsub.get_message(timeout=0)["data"] == "hello"
    pubsub.close()


def test_an_option_redis_py_does_not_know_fails_at_once():
    client = redis.Redis.from_url("redis://127.0.0.1:1/0", socket_keepalve=True)

    with pytest.raises(TypeError, match="socket_keepalve"):
        check_client_options(client)
    check_client_options(redis.Redis.from_url("redis://127.0.0.1:1/0", socket_keepalive=True))


def test_client_side_caching_is_refused_with_what_to_change():
    cache = pytest.importorskip("redis.cache")  # redis-py 5.1 and later
    client = redis.Redis.from_url("redis://127.0.0.1:1/0", protocol=3,
                                  cache_config=cache.CacheConfig())

    with pytest.raises(ConfigError) as caught:
        check_client_options(client)

    assert "cache_config" in caught.value.one_line()
