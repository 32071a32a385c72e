"""The Redis transport's small values (the `Values` part): results, counters and leases.

Keys (the whole layout is at the top of `redis.py`):

    <p>:v:<key>        string  a value, with its own expiry (PX) when it has a ttl
    <p>:n:<key>        list    the value last stored under <p>:v:<key> by `commit` or
                               `set_values`, for `wait_value` (BLPOP); one entry, expires
                               after NOTE_TTL_MS (or with the value, if sooner)
    <p>:lease:<name>   string  "<expires>|<owner>" (see redis_lease.lua)

Values expire on the server's own clock (PX), as Redis keys do: a test's clock does not move
them. Leases are judged by the transport's clock inside redis_lease.lua, so a test's clock
governs them.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence
from typing import Any

import redis

from fleet.engine.transport.base import StoredResult
from fleet.engine.transport.redis_store import RedisStore, chunks
from fleet.exceptions import BrokerDataError

#: Keys fetched per MGET when listing values by prefix.
MGET_CHUNK = 500
#: How long a stored value's notification (<p>:n:<key>) waits for a `wait_value` to pop it:
#: only waits that began before the store need it (later ones read the value itself).
NOTE_TTL_MS = 10_000
#: Shortest BLPOP timeout sent: Redis reads a timeout under 1 ms as "block forever".
MIN_BLOCK = 0.002
#: How much later than its timeout a BLPOP may return (the server checks timeouts on its
#: event loop's ticks); kept between a BLPOP's timeout and the client's socket_timeout.
BLOCK_SLACK = 0.25


def ttl_ms(ttl: float | None) -> int | None:
    """Milliseconds for PX, or None for "keep forever" (ttl None or 0)."""
    if not ttl or ttl <= 0:
        return None
    return max(1, round(ttl * 1000))


def glob_escape(text: str) -> str:
    """Escape `text` for a Redis MATCH pattern, so a prefix matches only literally."""
    return "".join(f"\\{char}" if char in "\\*?[]" else char for char in text)


class RedisValues(RedisStore):
    """The `Values` protocol over `<p>:v:`, `<p>:n:` and `<p>:lease:` keys."""

    def _store_commands(self, item: StoredResult) -> list[tuple[Any, ...]]:
        """SET the value, and leave it as the one entry of its notification list, which a
        `wait_value` blocked in BLPOP pops at once (see the key layout)."""
        ms = ttl_ms(item.ttl)
        note = self._key("n", item.key)
        # (DEL first, not LTRIM after: a note key of another type, not written by fleet,
        # must not fail the whole commit it rides in)
        return [("SET", self._key("v", item.key), item.value, *(("PX", ms) if ms else ())),
                ("DEL", note), ("LPUSH", note, item.value),
                ("PEXPIRE", note, min(ms or NOTE_TTL_MS, NOTE_TTL_MS))]

    def set_values(self, values: Sequence[StoredResult]) -> None:
        if not values:
            return
        pipe = self.client.pipeline(transaction=False)
        for item in values:
            for command in self._store_commands(item):
                pipe.execute_command(*command)
        pipe.execute()

    def get_value(self, key: str) -> str | None:
        with self._data_errors(key):
            return self.client.get(self._key("v", key))

    @contextlib.contextmanager
    def _data_errors(self, key: str) -> Iterator[None]:
        """A value key of another type (not written by fleet) is a BrokerDataError naming
        it, never a bare error reply."""
        try:
            yield
        except redis.exceptions.ResponseError as exc:
            raise BrokerDataError(
                f"the value {key!r} in Redis ({self._key('v', key)}) cannot be read: {exc}",
                "it was not written by fleet: delete the key") from None

    def wait_value(self, key: str, timeout: float, previous: str | None = None) -> str | None:
        """GET, then BLPOP on the key's notification list: a value stored after the GET
        is pushed there by the same round trip that stores it, so it is never missed and
        is seen at once. Another waiter may pop it first: then this one finds the value by
        the GET after its timeout."""
        socket_timeout = float(self._client_options.get("socket_timeout") or 0)
        if 0 < socket_timeout < BLOCK_SLACK * 2:
            # Too short a read timeout to block at all (Redis ends a BLPOP up to ~0.1 s
            # after its timeout): poll instead.
            return super().wait_value(key, timeout, previous)
        with self._data_errors(key):
            return self._wait_value(key, timeout, previous, socket_timeout)

    def _wait_value(self, key: str, timeout: float, previous: str | None,
                    socket_timeout: float) -> str | None:
        client = self.client
        deadline = time.monotonic() + timeout
        value = client.get(self._key("v", key))
        note = self._key("n", key)
        while value == previous:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            block = remaining
            if socket_timeout:  # end well before the socket gives up waiting for the reply
                block = min(block, socket_timeout - BLOCK_SLACK)
            popped = client.blpop([note], timeout=max(MIN_BLOCK, block))
            # Popped: the value stored last (if it equals `previous`, an older notification:
            # wait on). Timed out: look at the value itself (another waiter may have
            # taken the notification).
            value = popped[1] if popped is not None else client.get(self._key("v", key))
        return value

    def get_values(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []
        return self.client.mget([self._key("v", key) for key in keys])

    def delete_values(self, keys: Sequence[str]) -> None:
        if keys:
            self.client.delete(*[self._key(space, key) for key in keys for space in "vn"])

    def add_value(self, key: str, value: str, ttl: float | None = None) -> bool:
        return bool(self.client.set(self._key("v", key), value, px=ttl_ms(ttl), nx=True))

    def values_with_prefix(self, prefix: str) -> dict[str, str]:
        namespace = self._key("v", "")
        pattern = glob_escape(namespace + prefix) + "*"
        keys = list(dict.fromkeys(self.client.scan_iter(match=pattern, count=1000)))
        found: dict[str, str] = {}
        for chunk in chunks(keys, MGET_CHUNK):
            for key, value in zip(chunk, self.client.mget(chunk), strict=True):
                if value is not None:  # expired between SCAN and MGET
                    found[key[len(namespace):]] = value
        return found

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """INCRBY, and when `ttl` is given PEXPIRE (which restarts the expiry), atomically."""
        pipe = self.client.pipeline(transaction=True)
        pipe.incrby(self._key("v", key), amount)
        ms = ttl_ms(ttl)
        if ms is not None:
            pipe.pexpire(self._key("v", key), ms)
        return int(pipe.execute()[0])

    def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        ms = ttl_ms(ttl) or 1
        return bool(self._call("lease", [self._key("lease", name), self.prefix],
                               ["acquire", owner, ms]))

    def release_lease(self, name: str, owner: str) -> None:
        self._call("lease", [self._key("lease", name), self.prefix], ["release", owner, 0])

