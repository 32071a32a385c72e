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
    <p>:consumers         zset    consumer id, score = last heartbeat (by the clock: the
                                  server's TIME by default); a consumer holding messages is
                                  added here even if it never registered, so recovery always
                                  finds its reservations
    <p>:consumer:<cid>    string  JSON of the consumer's ConsumerInfo (node, queues, pid, ...)
    <p>:dead              list    dead letters, newest first, JSON {id, queue, body, reason,
                                  at}; capped at DEAD_LETTER_LIMIT
    <p>:v:<key>           string  small values (results, counters), each with its own expiry
    <p>:n:<key>           list    the value last stored under <p>:v:<key> by `commit` or
                                  `set_values`, for `wait_value` (BLPOP); one entry, expires
                                  after NOTE_TTL_MS (or with the value, if sooner)
    <p>:lease:<name>      string  "<expires>|<owner>" of a lease (see redis_lease.lua)
    <p>:aside:<t>:<key>   any     a key of the wrong type (not written by fleet) that a script
                                  met where it keeps one of the above: renamed out of the way
                                  at time <t> and reported in <p>:dead (see redis_lib.lua)

    channel <p>:bc:<channel>   broadcasts (remote control); nothing is stored
    channel <p>:wake:<queue>   published when a ready queue goes from empty to non-empty

Entries fleet did not write never fail a call: a key of the wrong type is set aside (above),
and a scheduled member, a reservation or a queued id that is not in fleet's format goes to
<p>:dead with the reason (redis_lib.lua); the client reads bytes that are not UTF-8 as
surrogates (they go back out unchanged, and the message codec refuses them).

Everything that reads and then writes runs as a Lua script (the redis_*.lua files next to
this module, each with redis_lib.lua prepended; see `redis_scripts`), so each step is atomic.
Every time comparison happens inside a script, against the server's clock by default: nodes
on hosts whose clocks disagree still agree on heartbeats, recovery, due times and leases (a
test's clock is passed in instead; see `redis_store`). On the worker's hot path `reserve` is
one script call and `commit` one round trip (a lone script call, or MULTI/EXEC when it also
stores results or puts messages).

`reserve` promotes due scheduled messages to their ready set in bounded batches, and takes
messages due within its horizon straight from the delayed set, so a message held for its
eta by one node never shows up early in another node's reserve.

Reservations and their recovery
-------------------------------
A reserved message leaves its queue's sorted set for `<p>:reserved:<cid>`; its body stays in
`<p>:msg` until it is acked. `redis_recover.lua` takes every consumer whose score in
`<p>:consumers` is older than the timeout (by the clock) out of that set, and for each one
requeues the unstarted entries of its reserved hash at their old score (and eta), marked in
`<p>:redelivered`, and deletes the started ones with their bodies, returning them as lost;
then it deletes the consumer's keys. The script is atomic, so a dead consumer is recovered
exactly once however many nodes recover at the same moment. A `reserve` whose reply was lost
is rolled back by the consumer's next `reserve` (its token names what it took), so nothing
is stranded with a live consumer either.

The parts: `redis_store` (client, keys, scripts, clock), `redis_values` (results, counters,
leases), `redis_admin` (purge, stats, dead letters), `redis_subscription` (pub/sub),
`redis_adapter` (the one place that reaches below redis-py's client API); this module keeps
the message flow, consumer liveness and broadcasts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any

import redis

from fleet.engine.transport.base import (
    Batch,
    ConsumerInfo,
    ConsumerRecord,
    Delivery,
    Done,
    Outgoing,
    Pending,
    Recovery,
    ReserveRequest,
    Subscription,
    clamp_priority,
)
from fleet.engine.transport.redis_adapter import DirectConnection
from fleet.engine.transport.redis_admin import RedisQueueAdmin, consumer_queues
from fleet.engine.transport.redis_store import CONNECTION_ERRORS, chunks
from fleet.engine.transport.redis_subscription import RedisSubscription
from fleet.engine.transport.redis_values import RedisValues

logger = logging.getLogger(__name__)

#: Dead letters kept; the oldest are dropped first.
DEAD_LETTER_LIMIT = 10_000
#: Messages per put script call: bounds how long one call holds the server.
PUT_CHUNK = 200
#: Dead consumers settled per recover script call.
RECOVER_CHUNK = 100


def _resp(args: Sequence[str | int]) -> bytes:
    """One command in the Redis protocol (RESP): what redis-py's `pack_command` makes of
    strings and integers, in a fraction of its time (it matters on a client's `put`)."""
    parts = [b"*%d\r\n" % len(args)]
    for arg in args:
        data = arg.encode() if isinstance(arg, str) else b"%d" % arg
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


def _deliveries(flat: list[Any]) -> list[Delivery]:
    """Deliveries from a reserve script's reply: id, queue, body, priority, redelivered."""
    return [Delivery(flat[i], flat[i + 1], flat[i + 2], clamp_priority(flat[i + 3]),
                     bool(flat[i + 4])) for i in range(0, len(flat), 5)]


def _flatten(replies: list[Any]) -> Iterator[Any]:
    for reply in replies:
        if isinstance(reply, list):
            yield from _flatten(reply)
        else:
            yield reply


class _RedisPending(Pending):
    """Replies of one `submit`, read in order once the socket is readable."""

    def __init__(self, transport: RedisTransport, connection: DirectConnection,
                 wire: list[tuple], consumer_id: str, batch: Batch,
                 reserve: ReserveRequest | None, token: str | None, rollbacks: list[str]):
        self.transport = transport
        self.connection = connection
        self.wire = wire
        self.consumer_id = consumer_id
        self.batch = batch
        self.reserve = reserve
        self.token = token
        self.rollbacks = rollbacks

    def fileno(self) -> int | None:
        return self.connection.fileno()

    def result(self) -> list[Delivery]:
        replies = self._read_replies()
        errors = [reply for reply in _flatten(replies) if isinstance(reply, Exception)]
        if any(isinstance(error, redis.exceptions.NoScriptError) for error in errors):
            return self._again()  # the server lost our scripts: load them, redo it all
        if errors:
            raise errors[0]
        if self.token is None:
            return []
        if self.rollbacks:
            self.transport._forget_rollbacks(self.consumer_id, self.rollbacks)
        return _deliveries(replies[-1])

    def _read_replies(self) -> list[Any]:
        """One reply per command sent; error replies are kept as exceptions. A dropped
        connection leaves the reserve's outcome unknown: its token is rolled back later."""
        replies = []
        try:
            for _ in self.wire:
                try:
                    replies.append(self.connection.read_reply())
                except redis.exceptions.ResponseError as exc:
                    replies.append(exc)
        except CONNECTION_ERRORS:
            self.connection.disconnect()
            if self.token:
                self.transport._rollbacks.append((self.consumer_id, self.token))
            raise
        return replies

    def _again(self) -> list[Delivery]:
        """Redo the work synchronously (acks, results and requeues are idempotent)."""
        transport = self.transport
        transport._reload_scripts()
        transport.commit(self.consumer_id, self.batch)
        if self.token is None:
            return []
        request = self.reserve
        return transport.reserve(self.consumer_id, request.queues, request.limit,
                                 request.horizon)


class RedisTransport(RedisValues, RedisQueueAdmin):
    """The Redis transport; see the module docstring for the key layout."""

    # -- producing and consuming ----------------------------------------------------------

    def put(self, messages: Sequence[Outgoing]) -> None:
        """One round trip: a script call per chunk of messages, pipelined but not in a
        transaction, so a huge put does not hold the server in one go."""
        batches = [self._put_args(chunk) for chunk in chunks(messages, PUT_CHUNK)]
        self._ensure_scripts()
        direct = "retry" not in self.options
        for _ in range(2):
            sent = self._put_direct(batches) if direct else None
            batches = self._put_chunks(batches) if sent is None else sent
            if not batches:
                return
            self._reload_scripts()
        raise redis.exceptions.NoScriptError("fleet's scripts vanished again after loading")

    def _put_direct(self, batches: list[list[Any]]) -> list[list[Any]] | None:
        """Send the batches' script calls in one write on a connection kept for puts, and
        read the replies: redis-py's pipeline and pool bookkeeping cost more than the round
        trip of a lone `delay()`, and its command packing dominates a big group's send.
        Returns the batches refused with NOSCRIPT, or None (nothing sent) when another
        thread is using the connection: the caller then takes the pipelined path."""
        client = self.client  # resets the connection and lock in a forked child
        lock = self._producer_lock
        if not lock.acquire(blocking=False):
            return None
        try:
            connection = self._producer
            if connection is None:
                connection = self._producer = DirectConnection(client)
            connection.drop_if_stale()  # the write below connects afresh
            packed = b"".join(_resp(("EVALSHA", *self.script_args("put", [self.prefix], args)))
                              for args in batches)
            try:
                connection.send_packed(packed)
                refused, error = self._read_put_replies(connection, batches)
            except BaseException:
                connection.disconnect()  # a reply may still be on its way: never reuse it
                raise
        finally:
            lock.release()
        if error is not None:
            raise error
        return refused

    @staticmethod
    def _read_put_replies(connection: DirectConnection, batches: list[list[Any]]
                          ) -> tuple[list[list[Any]], redis.exceptions.ResponseError | None]:
        """Read one reply per batch: the batches refused with NOSCRIPT, and the first other
        error reply (raised by the caller once every reply was read)."""
        refused, error = [], None
        for args in batches:
            try:
                connection.read_reply()
            except redis.exceptions.NoScriptError:
                refused.append(args)
            except redis.exceptions.ResponseError as exc:
                error = error or exc
        return refused, error

    def _put_chunks(self, batches: list[list[Any]]) -> list[list[Any]]:
        """Send the batches; return those refused with NOSCRIPT (to send again)."""
        if not batches:
            return []
        pipe = self.client.pipeline(transaction=False)
        for args in batches:
            pipe.evalsha(*self.script_args("put", [self.prefix], args))
        replies = pipe.execute(raise_on_error=False)
        for reply in replies:
            if isinstance(reply, Exception) and not isinstance(
                    reply, redis.exceptions.NoScriptError):
                raise reply
        return [args for args, reply in zip(batches, replies, strict=True)
                if isinstance(reply, redis.exceptions.NoScriptError)]

    @staticmethod
    def _put_args(messages: Sequence[Outgoing]) -> list[Any]:
        """Five script arguments per message (see redis_put.lua)."""
        args: list[Any] = []
        for out in messages:
            eta = "" if out.eta is None else repr(float(out.eta))
            args += [out.id, out.queue, clamp_priority(out.priority), eta, out.body]
        return args

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
        except CONNECTION_ERRORS:
            self._rollbacks.append((consumer_id, token))
            raise
        if rollbacks:
            self._forget_rollbacks(consumer_id, rollbacks)
        return _deliveries(flat)

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
            wire.append(("EVALSHA", *self.script_args(
                "reserve", [self.prefix], [consumer_id, reserve.limit, max(0.0, reserve.horizon),
                                           token, len(rollbacks), *rollbacks, *queues])))
        if not wire:
            return Done()
        self._ensure_scripts()
        connection = self._hot_connection()
        try:
            connection.send_commands(wire)
        except CONNECTION_ERRORS as exc:
            connection.disconnect()
            if token:
                self._rollbacks.append((consumer_id, token))
            return Done(error=exc)
        return _RedisPending(self, connection, wire, consumer_id, batch, reserve, token,
                             rollbacks)

    def _hot_connection(self) -> DirectConnection:
        client = self.client  # resets `_hot` in a forked child
        if self._hot is None:
            self._hot = DirectConnection(client)
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
        for chunk in chunks(batch.puts, PUT_CHUNK):
            commands.append(("EVALSHA", *self.script_args("put", [self.prefix],
                                                          self._put_args(chunk))))
        if batch.started or batch.acks or batch.requeues:
            commands.append(("EVALSHA", *self.script_args(
                "settle", [self.prefix], [consumer_id, len(batch.started), len(batch.acks),
                                          *batch.started, *batch.acks, *batch.requeues])))
        return commands

    def dead_letter(self, consumer_id: str, delivery: Delivery, reason: str) -> None:
        self._call("dead_letter", [self.prefix],
                   [consumer_id, delivery.id, delivery.queue, delivery.body, reason,
                    DEAD_LETTER_LIMIT])

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
        try:
            seen = self.client.zrange(self._key("consumers"), 0, -1, withscores=True)
        except redis.exceptions.ResponseError:
            return []  # not a sorted set (not written by fleet): the scripts set it aside
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
                (lost[i], Delivery(lost[i + 1], lost[i + 2], lost[i + 3],
                                   clamp_priority(lost[i + 4]), bool(lost[i + 5])))
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


def _consumer_json(consumer: ConsumerInfo) -> str:
    return json.dumps({"node": consumer.node, "queues": list(consumer.queues),
                       "pid": consumer.pid, "host": consumer.host, "info": consumer.info})


def _consumer_record(consumer_id: str, last_heartbeat: float, info_json: str | None
                     ) -> ConsumerRecord:
    """A record from the stored JSON; a consumer only known from `reserve` has none, and
    fields fleet did not write read as unknown."""
    try:
        info = json.loads(info_json) if info_json else {}
    except (ValueError, RecursionError):
        info = {}
    if not isinstance(info, dict):
        info = {}
    node, host, pid, details = (info.get("node"), info.get("host"), info.get("pid"),
                                info.get("info"))
    return ConsumerRecord(
        consumer_id=consumer_id,
        node=node if isinstance(node, str) else consumer_id.split("#", 1)[0],
        queues=consumer_queues(info_json), last_heartbeat=float(last_heartbeat),
        pid=pid if isinstance(pid, int) and not isinstance(pid, bool) else 0,
        host=host if isinstance(host, str) else "",
        info=details if isinstance(details, dict) else {})
