"""`redis://`, `rediss://` and `unix://`: the Redis transport.

Every key starts with the prefix `<p>` (option `prefix`, default "fleet"), so many fleets
can share one Redis database. The whole layout:

    <p>:seq               string  counter numbering puts (one INCRBY per put batch)
    <p>:msg               hash    message id -> body, for every message not yet acked
                                  (ready, scheduled or reserved)
    <p>:q:<queue>         zset    ready message ids; score = (9 - priority) * 2**43 + seq,
                                  so the lowest score is the highest priority, then the oldest
    <p>:delayed:<queue>   zset    scheduled messages (eta ahead); member "<score>|<id>" (the
                                  score it gets on <p>:q:<queue>), score = eta
    <p>:queues            set     every queue ever put to
    <p>:redelivered       set     ids back on a queue after a requeue or a recovery; removed
                                  (and reported as `Delivery.redelivered`) when reserved again
    <p>:reserved:<cid>    hash    what consumer <cid> holds: id ->
                                  "<started>|<redelivered>|<score>|<eta>|<token>|<queue>"
                                  (see redis_lib.lua); a requeue restores score and eta
    <p>:consumers         zset    consumer id, score = last heartbeat (the server's clock);
                                  a consumer holding messages is added here even if it never
                                  registered, so recovery always finds its reservations
    <p>:consumer:<cid>    string  JSON of the consumer's ConsumerInfo (node, queues, pid, ...)
    <p>:dead              list    dead letters, newest first, JSON {id, queue, body, reason,
                                  at}; capped at DEAD_LETTER_LIMIT
    <p>:v:<key>           string  small values (results, counters), each with its own expiry
    <p>:n:<key>           list    the value last stored under <p>:v:<key> by `commit` or
                                  `set_values`, for `wait_value` (BLPOP); one entry, expires
                                  after NOTE_TTL_MS (or with the value, if sooner)
    <p>:lease:<name>      string  a lease's owner, expiring with the lease

    channel <p>:bc:<channel>   broadcasts (remote control); nothing is stored
    channel <p>:wake:<queue>   published when a ready queue goes from empty to non-empty

Everything that reads and then writes runs as a Lua script (the redis_*.lua files next to
this module, each with redis_lib.lua prepended), so each step is atomic and every time
comparison uses the server's clock: nodes on hosts whose clocks disagree still agree on
heartbeats, recovery and due times. On the worker's hot path `reserve` is one script call
and `commit` one round trip (a lone script call, or MULTI/EXEC when it also stores results
or puts messages).

`reserve` promotes due scheduled messages to their ready set in bounded batches, and takes
messages due within its horizon straight from the delayed set, so a message held for its
eta by one node never shows up early in another node's reserve.

redis-py retries failed commands by default; this transport turns that off (unless the
options pass a `retry`), because re-running a script whose reply was lost would reserve or
count twice. Errors propagate and the worker reconnects. A `reserve` whose reply is lost is
rolled back by the consumer's next `reserve`, so its messages are not stranded.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from importlib import resources
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from fleet.engine.transport.base import (
    DEAD_LETTER_QUEUE,
    Batch,
    ConsumerInfo,
    ConsumerRecord,
    DeadLetter,
    Delivery,
    Done,
    Outgoing,
    Pending,
    QueueStats,
    Recovery,
    ReserveRequest,
    StoredResult,
    Subscription,
    Transport,
    clamp_priority,
)
from fleet.exceptions import BrokerUnavailable
from fleet.operator_errors import ConfigError

logger = logging.getLogger(__name__)

#: Dead letters kept; the oldest are dropped first.
DEAD_LETTER_LIMIT = 10_000
#: Messages per put script call: bounds how long one call holds the server.
PUT_CHUNK = 200
#: Messages deleted per purge script call.
PURGE_CHUNK = 1000
#: Dead consumers settled per recover script call.
RECOVER_CHUNK = 100
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

_SCRIPT_NAMES = ("put", "reserve", "settle", "recover", "unregister", "consumer",
                 "dead_letter", "purge", "lease")
_CONNECTION_ERRORS = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)


def _ttl_ms(ttl: float | None) -> int | None:
    """Milliseconds for PX, or None for "keep forever" (ttl None or 0)."""
    if not ttl or ttl <= 0:
        return None
    return max(1, round(ttl * 1000))


def _glob_escape(text: str) -> str:
    """Escape `text` for a Redis MATCH pattern, so a prefix matches only literally."""
    return "".join(f"\\{char}" if char in "\\*?[]" else char for char in text)


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def _resp(args: Sequence[str | int]) -> bytes:
    """One command in the Redis protocol (RESP): what redis-py's `pack_command` makes of
    strings and integers, in a fraction of its time (it matters on a client's `put`)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else b"%d" % arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class _Scripts:
    """The Lua scripts, addressed by SHA so a call sends only the digest (EVALSHA)."""

    def __init__(self) -> None:
        package = resources.files("fleet.engine.transport")
        lib = package.joinpath("redis_lib.lua").read_text(encoding="utf-8")
        self.source: dict[str, str] = {}
        self.sha: dict[str, str] = {}
        for name in _SCRIPT_NAMES:
            text = lib + package.joinpath(f"redis_{name}.lua").read_text(encoding="utf-8")
            self.source[name] = text
            self.sha[name] = hashlib.sha1(text.encode("utf-8"),
                                         usedforsecurity=False).hexdigest()

    def load(self, client: redis.Redis) -> None:
        """SCRIPT LOAD every script in one transaction (one round trip), so at any moment
        the server has all of them or none, and pipelines can use EVALSHA."""
        pipe = client.pipeline(transaction=True)
        for text in self.source.values():
            pipe.script_load(text)
        pipe.execute()


_SCRIPTS: _Scripts | None = None


def _scripts() -> _Scripts:
    global _SCRIPTS
    if _SCRIPTS is None:
        _SCRIPTS = _Scripts()
    return _SCRIPTS


class RedisSubscription(Subscription):
    """Broadcasts and wakeups over one pub/sub connection.

    `fileno()` is that connection's socket; if the connection drops, `poll()` raises
    redis's ConnectionError and the next `poll()` reconnects and subscribes again, so
    callers should ask for `fileno()` afresh before each wait.
    """

    poll_interval = 1.0

    def __init__(self, client: redis.Redis, prefix: str, channels: Sequence[str],
                 wake_queues: Sequence[str], timeout: float):
        self._broadcast_prefix = f"{prefix}:bc:"
        self._wake = {f"{prefix}:wake:{queue}" for queue in wake_queues}
        names = [f"{self._broadcast_prefix}{channel}" for channel in channels]
        names = list(dict.fromkeys(names + sorted(self._wake)))
        self._pending: list[tuple[str, str]] = []
        self._woken = False
        self._pubsub = client.pubsub() if names else None
        if self._pubsub is not None:
            self._pubsub.subscribe(*names)
            self._await_confirmations(len(names), timeout)

    def _await_confirmations(self, expected: int, timeout: float) -> None:
        """Read the SUBSCRIBE replies, so nothing published after we return is missed."""
        confirmed = 0
        deadline = time.monotonic() + timeout
        while confirmed < expected:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                raise redis.exceptions.TimeoutError("no reply to SUBSCRIBE in time")
            message = self._pubsub.get_message(timeout=remaining)
            if message is None:
                continue
            if message["type"] == "subscribe":
                confirmed += 1
            else:
                self._handle(message)

    def _handle(self, message: dict) -> None:
        if message["type"] != "message":
            return
        channel = message["channel"]
        if channel in self._wake:
            self._woken = True
        elif channel.startswith(self._broadcast_prefix):
            self._pending.append((channel[len(self._broadcast_prefix):], message["data"]))

    def fileno(self) -> int | None:
        connection = self._pubsub.connection if self._pubsub is not None else None
        # redis-py has no public accessor for the socket of a pub/sub connection.
        sock = getattr(connection, "_sock", None)
        return sock.fileno() if sock is not None else None

    def poll(self) -> tuple[list[tuple[str, str]], bool]:
        if self._pubsub is not None:
            self._drain()
        broadcasts, self._pending = self._pending, []
        woken, self._woken = self._woken, False
        return broadcasts, woken

    def _drain(self) -> None:
        """Read every message already received, without blocking."""
        pubsub = self._pubsub
        while True:
            message = pubsub.get_message(timeout=0)
            if message is not None:
                self._handle(message)
            elif not pubsub.connection.can_read(timeout=0):
                return

    def close(self) -> None:
        if self._pubsub is not None:
            self._pubsub.close()
            self._pubsub = None


class _RedisPending(Pending):
    """Replies of one `submit`, read in order once the socket is readable."""

    def __init__(self, transport: RedisTransport, connection: Any, wire: list[tuple],
                 consumer_id: str, batch: Batch, reserve: ReserveRequest | None,
                 token: str | None, rollbacks: list[str]):
        self.transport = transport
        self.connection = connection
        self.wire = wire
        self.consumer_id = consumer_id
        self.batch = batch
        self.reserve = reserve
        self.token = token
        self.rollbacks = rollbacks

    def fileno(self) -> int | None:
        sock = self.connection._sock
        return sock.fileno() if sock is not None else None

    def result(self) -> list[Delivery]:
        replies = []
        try:
            for _ in self.wire:
                try:
                    replies.append(self.connection.read_response())
                except redis.exceptions.ResponseError as exc:
                    replies.append(exc)
        except _CONNECTION_ERRORS:
            self.connection.disconnect()
            if self.token:
                self.transport._rollbacks.append((self.consumer_id, self.token))
            raise
        errors = [reply for reply in _flatten(replies) if isinstance(reply, Exception)]
        if any(isinstance(error, redis.exceptions.NoScriptError) for error in errors):
            return self._again()  # the server lost our scripts: load them, redo it all
        if errors:
            raise errors[0]
        if self.token is None:
            return []
        if self.rollbacks:
            self.transport._forget_rollbacks(self.consumer_id, self.rollbacks)
        flat = replies[-1]
        return [Delivery(flat[i], flat[i + 1], flat[i + 2], int(flat[i + 3]), bool(flat[i + 4]))
                for i in range(0, len(flat), 5)]

    def _again(self) -> list[Delivery]:
        """Redo the work synchronously (acks, results and requeues are idempotent)."""
        transport = self.transport
        logger.info("Redis at %s lost fleet's scripts; loading them again", transport.describe())
        _scripts().load(transport.client)
        transport.commit(self.consumer_id, self.batch)
        if self.token is None:
            return []
        request = self.reserve
        return transport.reserve(self.consumer_id, request.queues, request.limit,
                                 request.horizon)


def _flatten(replies: list[Any]) -> Iterator[Any]:
    for reply in replies:
        if isinstance(reply, list):
            yield from _flatten(reply)
        else:
            yield reply


class RedisTransport(Transport):
    """The Redis transport; see the module docstring for the key layout."""

    schemes = ("redis", "rediss", "unix")
    transient_errors = (*_CONNECTION_ERRORS, BrokerUnavailable)

    def __init__(self, url: str, options: dict | None = None, clock: Any = None):
        super().__init__(url, options, clock)
        client_options = dict(self.options)
        self.prefix = str(client_options.pop("prefix", "fleet"))
        self.connect_timeout = float(client_options.pop("connect_timeout", 4.0))
        client_options.setdefault("retry", Retry(NoBackoff(), 0))
        self._client_options = client_options
        self._scripts_loaded = False
        self._tokens = itertools.count()
        self._token_base = secrets.token_hex(3)
        #: (consumer id, token) of reserve calls whose outcome is unknown; see `reserve`.
        self._rollbacks: list[tuple[str, str]] = []
        # Built now, so a bad URL or option fails at open; reconnects lazily on first use.
        self._client: redis.Redis | None = self._connect()
        self._pid = os.getpid()
        #: The connection `submit` sends on and reads from (a node's hot path).
        self._hot: Any = None
        #: The connection a lone `put` uses (a client's hot path), and its lock; see `put`.
        self._producer: Any = None
        self._producer_lock = threading.Lock()

    # -- connection -----------------------------------------------------------------------

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
            # The pool passes options on only when it connects: build one connection
            # object (no socket) so a misspelt option fails here, not at the first call.
            pool = client.connection_pool
            pool.connection_class(**pool.connection_kwargs)
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

    def _call(self, name: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run one script (EVALSHA), loading the scripts first when the server lacks them."""
        return self._with_scripts(lambda: self.client.evalsha(
            _scripts().sha[name], len(keys), *keys, *args))

    def _ensure_scripts(self) -> None:
        if not self._scripts_loaded:
            _scripts().load(self.client)
            self._scripts_loaded = True

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
            logger.info("Redis at %s lost fleet's scripts; loading them again", self.describe())
            _scripts().load(self.client)
            return action()

    # -- producing and consuming ----------------------------------------------------------

    def put(self, messages: Sequence[Outgoing]) -> None:
        """One round trip: a script call per chunk of messages, pipelined but not in a
        transaction, so a huge put does not hold the server in one go."""
        chunks = [self._put_args(chunk) for chunk in _chunks(messages, PUT_CHUNK)]
        self._ensure_scripts()
        direct = "retry" not in self.options
        for _ in range(2):
            sent = self._put_direct(chunks) if direct else None
            chunks = self._put_chunks(chunks) if sent is None else sent
            if not chunks:
                return
            logger.info("Redis at %s lost fleet's scripts; loading them again", self.describe())
            _scripts().load(self.client)
        raise redis.exceptions.NoScriptError("fleet's scripts vanished again after loading")

    def _put_direct(self, chunks: list[list[Any]]) -> list[list[Any]] | None:
        """Send the chunks' script calls in one write on a connection kept for puts, and
        read the replies: redis-py's pipeline and pool bookkeeping cost more than the round
        trip of a lone `delay()`, and its command packing dominates a big group's send.
        Returns the chunks refused with NOSCRIPT, or None (nothing sent) when another
        thread is using the connection: the caller then takes the pipelined path."""
        client = self.client  # resets the connection and lock in a forked child
        lock = self._producer_lock
        if not lock.acquire(blocking=False):
            return None
        try:
            connection = self._producer
            if connection is None:
                connection = self._producer = client.connection_pool.make_connection()
            elif connection._sock is not None:
                try:  # readable while idle: the server closed it (restart, timeout)
                    stale = connection.can_read(timeout=0)
                except (*_CONNECTION_ERRORS, OSError):
                    stale = True
                if stale:
                    connection.disconnect()  # the write below connects afresh
            sha = _scripts().sha["put"]
            packed = b"".join(_resp(("EVALSHA", sha, 1, self.prefix, *args)) for args in chunks)
            refused, error = [], None
            try:
                connection.send_packed_command([packed], check_health=False)
                for args in chunks:
                    try:
                        connection.read_response()
                    except redis.exceptions.NoScriptError:
                        refused.append(args)
                    except redis.exceptions.ResponseError as exc:
                        error = error or exc  # read every reply before raising
            except BaseException:
                connection.disconnect()  # a reply may still be on its way: never reuse it
                raise
            if error is not None:
                raise error
            return refused
        finally:
            lock.release()

    def _put_chunks(self, chunks: list[list[Any]]) -> list[list[Any]]:
        """Send the chunks; return those refused with NOSCRIPT (to send again)."""
        if not chunks:
            return []
        pipe = self.client.pipeline(transaction=False)
        for args in chunks:
            pipe.evalsha(_scripts().sha["put"], 1, self.prefix, *args)
        replies = pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, Exception) and not isinstance(
                    reply, redis.exceptions.NoScriptError):
                raise reply
        return [args for args, reply in zip(chunks, replies, strict=True)
                if isinstance(reply, redis.exceptions.NoScriptError)]

    def reserve(self, consumer_id: str, queues: Sequence[str], limit: int,
                horizon: float = 0.0) -> list[Delivery]:
        """One script call. If it fails with a connection error, the reply (and so the
        messages) may be lost: the token of the call is remembered and the consumer's next
        `reserve` returns whatever that call reserved to its queues, in the same call."""
        queues = list(dict.fromkeys(queues))
        if limit <= 0 or not queues:
            return []
        token = f"{self._token_base}{next(self._tokens)}"
        rollbacks = [tok for cid, tok in self._rollbacks if cid == consumer_id]
        args = [consumer_id, limit, max(0.0, horizon), token, len(rollbacks), *rollbacks,
                *queues]
        try:
            flat = self._call("reserve", [self.prefix], args)
        except _CONNECTION_ERRORS:
            self._rollbacks.append((consumer_id, token))
            raise
        if rollbacks:
            self._forget_rollbacks(consumer_id, rollbacks)
        return [Delivery(flat[i], flat[i + 1], flat[i + 2], int(flat[i + 3]), bool(flat[i + 4]))
                for i in range(0, len(flat), 5)]

    def submit(self, consumer_id: str, batch: Batch,
               reserve: ReserveRequest | None = None) -> Pending:
        """Send the batch's commands and the reserve script in one write, on a connection
        of its own, and return at once: the node reads the replies when they arrive."""
        commands = self._batch_commands(consumer_id, batch) if batch else []
        wire = [("MULTI",), *commands, ("EXEC",)] if len(commands) > 1 else list(commands)
        token, rollbacks = None, []
        queues = list(dict.fromkeys(reserve.queues)) if reserve else []
        if reserve is not None and reserve.limit > 0 and queues:
            token = f"{self._token_base}{next(self._tokens)}"
            rollbacks = [tok for cid, tok in self._rollbacks if cid == consumer_id]
            wire.append(("EVALSHA", _scripts().sha["reserve"], 1, self.prefix, consumer_id,
                         reserve.limit, max(0.0, reserve.horizon), token, len(rollbacks),
                         *rollbacks, *queues))
        if not wire:
            return Done()
        self._ensure_scripts()
        connection = self._hot_connection()
        try:
            connection.send_packed_command(connection.pack_commands(wire), check_health=False)
        except _CONNECTION_ERRORS as exc:
            connection.disconnect()
            if token:
                self._rollbacks.append((consumer_id, token))
            return Done(error=exc)
        return _RedisPending(self, connection, wire, consumer_id, batch, reserve, token,
                             rollbacks)

    def _hot_connection(self) -> Any:
        client = self.client  # resets `_hot` in a forked child
        if self._hot is None:
            self._hot = client.connection_pool.make_connection()
        if self._hot._sock is None:
            self._hot.connect()
        return self._hot

    def _forget_rollbacks(self, consumer_id: str, tokens: list[str]) -> None:
        done = set(tokens)
        logger.warning("Redis: returned messages of %d failed reserve call(s) of %s to "
                       "their queues", len(done), consumer_id)
        self._rollbacks = [(cid, tok) for cid, tok in self._rollbacks
                           if cid != consumer_id or tok not in done]

    def commit(self, consumer_id: str, batch: Batch) -> None:
        """One round trip: the results, the puts, then one script call for the started
        marks, acks and requeues, in the contract's order. Several commands go in one
        MULTI/EXEC, all or nothing, so a dropped connection leaves the batch applied or
        not at all; a lone command (the usual batch of acks) is atomic by itself."""
        if batch:
            self._with_scripts(lambda: self._commit(consumer_id, batch))

    def _commit(self, consumer_id: str, batch: Batch) -> None:
        commands = self._batch_commands(consumer_id, batch)
        if len(commands) == 1:
            self.client.execute_command(*commands[0])
            return
        pipe = self.client.pipeline(transaction=True)
        for command in commands:
            pipe.execute_command(*command)
        pipe.execute()

    def _batch_commands(self, consumer_id: str, batch: Batch) -> list[tuple[Any, ...]]:
        commands: list[tuple[Any, ...]] = []
        for result in batch.results:
            commands += self._store_commands(result)
        for chunk in _chunks(batch.puts, PUT_CHUNK):
            commands.append(("EVALSHA", _scripts().sha["put"], 1, self.prefix,
                             *self._put_args(chunk)))
        if batch.started or batch.acks or batch.requeues:
            commands.append(("EVALSHA", _scripts().sha["settle"], 1, self.prefix, consumer_id,
                             len(batch.started), len(batch.acks),
                             *batch.started, *batch.acks, *batch.requeues))
        return commands

    def _store_commands(self, item: StoredResult) -> list[tuple[Any, ...]]:
        """SET the value, and leave it as the one entry of its notification list, which a
        `wait_value` blocked in BLPOP pops at once (see the key layout)."""
        ms = _ttl_ms(item.ttl)
        note = self._key("n", item.key)
        return [("SET", self._key("v", item.key), item.value, *(("PX", ms) if ms else ())),
                ("LPUSH", note, item.value), ("LTRIM", note, 0, 0),
                ("PEXPIRE", note, min(ms or NOTE_TTL_MS, NOTE_TTL_MS))]

    @staticmethod
    def _put_args(messages: Sequence[Outgoing]) -> list[Any]:
        """Five script arguments per message (see redis_put.lua)."""
        args: list[Any] = []
        for out in messages:
            eta = "" if out.eta is None else repr(float(out.eta))
            args += [out.id, out.queue, clamp_priority(out.priority), eta, out.body]
        return args

    def purge(self, queues: Sequence[str]) -> int:
        count = 0
        for queue in dict.fromkeys(queues):
            if queue == DEAD_LETTER_QUEUE:
                count += self._purge_dead_letters()
            while deleted := self._call("purge", [self.prefix], [queue, PURGE_CHUNK]):
                count += deleted
        return count

    def _purge_dead_letters(self) -> int:
        pipe = self.client.pipeline(transaction=True)
        pipe.llen(self._key("dead"))
        pipe.delete(self._key("dead"))
        return pipe.execute()[0]

    def queue_stats(self) -> list[QueueStats]:
        """Every queue ever put to or consumed, sorted by name; three round trips.

        `ready` counts scheduled messages whose eta has passed too (they are promoted on
        the next reserve); `reserved` and `consumers` count every registered consumer
        (one that died is counted until some node's `recover` runs).
        """
        now, known, consumer_ids, dead = self._stats_overview()
        stats = {name: QueueStats(name) for name in known}
        self._count_consumers(consumer_ids, stats)
        self._count_messages(now, stats)
        if dead:
            stats[DEAD_LETTER_QUEUE] = QueueStats(DEAD_LETTER_QUEUE, ready=dead)
        return [stats[name] for name in sorted(stats)]

    def _stats_overview(self) -> tuple[float, set[str], list[str], int]:
        pipe = self.client.pipeline(transaction=False)
        pipe.time()
        pipe.smembers(self._key("queues"))
        pipe.zrange(self._key("consumers"), 0, -1)
        pipe.llen(self._key("dead"))
        (seconds, micros), known, consumer_ids, dead = pipe.execute()
        return seconds + micros / 1e6, set(known), consumer_ids, dead

    def _count_consumers(self, consumer_ids: list[str], stats: dict[str, QueueStats]) -> None:
        pipe = self.client.pipeline(transaction=False)
        for cid in consumer_ids:
            pipe.get(self._key("consumer", cid))
            pipe.hvals(self._key("reserved", cid))
        replies = pipe.execute()
        for info_json, held in zip(replies[::2], replies[1::2], strict=True):
            queues = json.loads(info_json).get("queues", []) if info_json else []
            for queue in dict.fromkeys(queues):
                stats.setdefault(queue, QueueStats(queue)).consumers += 1
            for value in held:
                queue = value.split("|", 5)[5]
                stats.setdefault(queue, QueueStats(queue)).reserved += 1

    def _count_messages(self, now: float, stats: dict[str, QueueStats]) -> None:
        names = sorted(stats)
        pipe = self.client.pipeline(transaction=False)
        for name in names:
            delayed = self._key("delayed", name)
            pipe.zcard(self._key("q", name))
            pipe.zcount(delayed, "-inf", now)
            pipe.zcount(delayed, f"({now}", "+inf")
        replies = pipe.execute()
        for index, name in enumerate(names):
            ready, due, scheduled = replies[index * 3:index * 3 + 3]
            stats[name].ready += ready + due
            stats[name].scheduled += scheduled

    def dead_letter(self, consumer_id: str, delivery: Delivery, reason: str) -> None:
        self._call("dead_letter", [self.prefix],
                   [consumer_id, delivery.id, delivery.queue, delivery.body, reason,
                    DEAD_LETTER_LIMIT])

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        if limit <= 0:
            return []
        entries = self.client.lrange(self._key("dead"), 0, limit - 1)
        letters = []
        for text in entries:
            entry = json.loads(text)
            letters.append(DeadLetter(entry["id"], entry["queue"], entry["body"],
                                      entry["reason"], float(entry["at"])))
        return letters

    # -- consumers: liveness and recovery -------------------------------------------------

    def register(self, consumer: ConsumerInfo) -> None:
        self._call("consumer", [self.prefix], [consumer.consumer_id, _consumer_json(consumer)])

    def heartbeat(self, consumer: ConsumerInfo) -> None:
        added = self._call("consumer", [self.prefix],
                           [consumer.consumer_id, _consumer_json(consumer)])
        if added:
            logger.warning("Redis: consumer %s was not registered (declared dead by another "
                           "node?); registered it again", consumer.consumer_id)

    def unregister(self, consumer_id: str) -> None:
        requeued = self._call("unregister", [self.prefix], [consumer_id])
        if requeued:
            logger.info("Redis: %s left; requeued %d message(s) it held", consumer_id, requeued)

    def consumers(self) -> list[ConsumerRecord]:
        seen = self.client.zrange(self._key("consumers"), 0, -1, withscores=True)
        if not seen:
            return []
        infos = self.client.mget([self._key("consumer", cid) for cid, _ in seen])
        return [_consumer_record(cid, beat, info) for (cid, beat), info in
                zip(seen, infos, strict=True)]

    def recover(self, timeout: float) -> Recovery:
        report = Recovery()
        while True:
            dead, requeued, lost = self._call("recover", [self.prefix],
                                              [max(0.0, timeout), RECOVER_CHUNK])
            report.dead_consumers += dead
            report.requeued += requeued
            report.lost += [
                (lost[i], Delivery(lost[i + 1], lost[i + 2], lost[i + 3], int(lost[i + 4]),
                                   bool(lost[i + 5])))
                for i in range(0, len(lost), 6)
            ]
            if len(dead) < RECOVER_CHUNK:
                return report

    # -- subscriptions: broadcasts and wakeups --------------------------------------------

    def publish(self, channel: str, payload: str) -> None:
        self.client.publish(self._key("bc", channel), payload)

    def subscribe(self, channels: Sequence[str], wake_queues: Sequence[str] = ()) -> Subscription:
        return RedisSubscription(self.client, self.prefix, channels, wake_queues,
                                 timeout=self.connect_timeout)

    # -- small values: results, counters, leases ------------------------------------------

    def set_values(self, values: Sequence[StoredResult]) -> None:
        if not values:
            return
        pipe = self.client.pipeline(transaction=False)
        for item in values:
            for command in self._store_commands(item):
                pipe.execute_command(*command)
        pipe.execute()

    def get_value(self, key: str) -> str | None:
        return self.client.get(self._key("v", key))

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
        return bool(self.client.set(self._key("v", key), value, px=_ttl_ms(ttl), nx=True))

    def values_with_prefix(self, prefix: str) -> dict[str, str]:
        namespace = self._key("v", "")
        pattern = _glob_escape(namespace + prefix) + "*"
        keys = list(dict.fromkeys(self.client.scan_iter(match=pattern, count=1000)))
        found: dict[str, str] = {}
        for chunk in _chunks(keys, MGET_CHUNK):
            for key, value in zip(chunk, self.client.mget(chunk), strict=True):
                if value is not None:  # expired between SCAN and MGET
                    found[key[len(namespace):]] = value
        return found

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        """INCRBY, and when `ttl` is given PEXPIRE (which restarts the expiry), atomically."""
        pipe = self.client.pipeline(transaction=True)
        pipe.incrby(self._key("v", key), amount)
        ms = _ttl_ms(ttl)
        if ms is not None:
            pipe.pexpire(self._key("v", key), ms)
        return int(pipe.execute()[0])

    def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        ms = _ttl_ms(ttl) or 1
        return bool(self._call("lease", [self._key("lease", name)], ["acquire", owner, ms]))

    def release_lease(self, name: str, owner: str) -> None:
        self._call("lease", [self._key("lease", name)], ["release", owner, 0])


def _consumer_json(consumer: ConsumerInfo) -> str:
    return json.dumps({"node": consumer.node, "queues": list(consumer.queues),
                       "pid": consumer.pid, "host": consumer.host, "info": consumer.info})


def _consumer_record(consumer_id: str, last_heartbeat: float, info_json: str | None
                     ) -> ConsumerRecord:
    """A record from the stored JSON; a consumer only known from `reserve` has none."""
    info = json.loads(info_json) if info_json else {}
    return ConsumerRecord(consumer_id=consumer_id,
                          node=info.get("node", consumer_id.split("#", 1)[0]),
                          queues=list(info.get("queues", [])), pid=int(info.get("pid", 0)),
                          host=info.get("host", ""), last_heartbeat=float(last_heartbeat),
                          info=dict(info.get("info", {})))
