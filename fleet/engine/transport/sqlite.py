"""`sqlite:///path/to/file.db`: the default, embedded broker. No server needed.

For one machine: any number of producer and node processes share one database file. It
follows the contract in `base.py`. The file, its connections and write transactions are in
`sqlite_store.py` (WAL, busy timeout, short `BEGIN IMMEDIATE` writes), the small values in
`sqlite_values.py`; messages, consumers and broadcasts here.

Tables
------
messages(seq, id, queue, priority, eta, body, owner, started, redelivered)
    Messages due now or within a node's horizon. `seq` (AUTOINCREMENT) gives FIFO order and
    is kept on requeue, so a requeued message goes back ahead of newer ones. `owner` is the
    consumer_id holding the reservation (NULL: ready). `started` marks early-acked tasks that
    began running. `eta` is kept, so a requeued ETA message waits for it again.
scheduled(id, queue, priority, eta, body)
    Messages with a future ETA; moved to `messages` by `reserve` once eta <= now + horizon.
queues(name)                 every queue ever put to.
consumers(id, node, queues, pid, host, heartbeat, info)   registered consumers; `heartbeat`
    is the time of the last register/heartbeat (or of the first `reserve` of a consumer that
    never registered: it is added then, so what it holds can be recovered).
kv(key, value, expires)      results, counters, leases and other small values
    (`sqlite_values.py`).
dead_letters(seq, id, queue, body, reason, at)            moved-aside messages (the newest
    DEAD_LETTERS_KEEP are kept).
broadcasts(seq, channel, payload, at)                     a short backlog of broadcasts;
    subscribers read rows newer than the last one they saw; rows older than a minute go.
meta(key, value)             the schema version (`sqlite_store.py`).

Reservations and their recovery
-------------------------------
Reservations are rows with an owner (lease columns), never deleted on read: a message is
deleted only by its owner's ack (or dead-lettering), and every settle statement says
`AND owner = ?`, so a consumer declared dead cannot touch what it no longer holds. `recover`
finds consumers whose `heartbeat` is older than the timeout, and in one write transaction
per call deletes (and reports as lost) their rows with `started = 1`, sets `owner = NULL,
redelivered = 1` on the others (back on their queue at their old `seq`), and deletes the
consumer rows. The transaction makes each dead consumer recovered exactly once.

Rows fleet did not write (SQLite does not enforce column types) never fail a call or hide
a queue: `reserve` moves a message row it cannot deliver (a priority 'high', a body that is a
number or not UTF-8, an eta 'abc') to the dead letters with the reason, and a consumer whose
heartbeat is not a number counts as dead (`sqlite_rows`).

Every time compared here (heartbeats, etas, expiry, broadcast age) is the transport's clock
(`clock.py`) passed in as a query argument: `time.time()` by default.

Wake-ups: `<db>.wake/` next to the file holds a Unix datagram socket per subscriber, so a
put or a broadcast wakes the nodes of that queue or channel at once instead of at their
next poll (see `sqlite_wake`).

Options: `connect_timeout` is the busy timeout in seconds (at least 10 s is used).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from fleet.engine.transport.base import (
    DEAD_LETTER_QUEUE,
    Batch,
    ConsumerInfo,
    ConsumerRecord,
    DeadLetter,
    Delivery,
    Outgoing,
    QueueStats,
    Recovery,
    Subscription,
    clamp_priority,
    queues_from_json,
)
from fleet.engine.transport.clock import Clock
from fleet.engine.transport.sqlite_rows import (
    ETA_DUE,
    HEARTBEAT_DEAD,
    problem,
    raw,
    select_ready,
    set_aside,
    text_of,
)
from fleet.engine.transport.sqlite_store import SCHEMA_VERSION, path_from_url
from fleet.engine.transport.sqlite_values import SQLiteValues
from fleet.engine.transport.sqlite_wake import WakeSender, WakeSocket

__all__ = ["SCHEMA_VERSION", "SQLiteTransport", "path_from_url"]

BROADCAST_KEEP_SECONDS = 60.0
DEAD_LETTERS_KEEP = 10000
#: The reason given to a scheduled message whose id another message already has.
_DUPLICATE = "a scheduled message with the id of another message on the broker: dropped"


class _SQLiteSubscription(Subscription):
    """Reads the broadcasts table; `PRAGMA data_version` tells cheaply whether anything
    was committed by another connection since the last poll.

    With a wake-up socket (`sqlite_wake`; the usual case) `fileno()` is that socket, and
    only a datagram for one of `wake_queues` counts as woken; without one it is polled and
    any commit counts as woken (it cannot tell which queue changed)."""

    def __init__(self, transport: SQLiteTransport, channels: Sequence[str],
                 wake_queues: Sequence[str] = ()):
        self.transport = transport
        self.channels = list(channels)
        self.conn = transport.new_connection()
        row = self.conn.execute("SELECT COALESCE(MAX(seq), 0) FROM broadcasts").fetchone()
        self.last_seq = row[0]
        self.version = None
        self._wake = WakeSocket.open(transport.path, wake_queues, self.channels)

    def fileno(self) -> int | None:
        return self._wake.fileno() if self._wake is not None else None

    def poll(self) -> tuple[list[tuple[str, str]], bool]:
        woken = None
        if self._wake is not None:
            woken = b"q" in self._wake.drain()
        version = self.conn.execute("PRAGMA data_version").fetchone()[0]
        if version == self.version:
            return [], bool(woken)
        self.version = version
        woken = True if woken is None else woken
        if not self.channels:
            return [], woken
        marks = ",".join("?" * len(self.channels))
        rows = self.conn.execute(
            f"SELECT seq, channel, payload FROM broadcasts WHERE seq > ? AND channel IN ({marks})"
            " ORDER BY seq", (self.last_seq, *self.channels)).fetchall()
        if rows:
            self.last_seq = rows[-1][0]
        return [(channel, payload) for _, channel, payload in rows], woken

    def close(self) -> None:
        if self._wake is not None:
            self._wake.close()
            self._wake = None
        self.conn.close()


class SQLiteTransport(SQLiteValues):
    """The SQLite transport: messages, consumers and broadcasts over `sqlite_store`."""

    def __init__(self, url: str, options: dict | None = None, clock: Clock | None = None):
        super().__init__(url, options, clock)
        self._publishes = 0
        self._waker = WakeSender(self.path)

    def close(self) -> None:
        super().close()
        self._waker.close()

    # -- messages ---------------------------------------------------------------------------

    def put(self, messages: Sequence[Outgoing]) -> None:
        if messages:
            with self._write() as conn:
                self._insert(conn, messages)
            self._waker.wake("q", [m.queue for m in messages])

    def _insert(self, conn: sqlite3.Connection, messages: Sequence[Outgoing]) -> None:
        now = self.clock.time()
        due = [(m.id, m.queue, m.priority, m.body) for m in messages
               if m.eta is None or m.eta <= now]
        later = [(m.id, m.queue, m.priority, m.eta, m.body) for m in messages
                 if m.eta is not None and m.eta > now]
        if due:
            conn.executemany("INSERT INTO messages (id, queue, priority, body) VALUES (?,?,?,?)",
                             due)
        if later:
            conn.executemany("INSERT INTO scheduled (id, queue, priority, eta, body) "
                             "VALUES (?,?,?,?,?)", later)
        conn.executemany("INSERT OR IGNORE INTO queues VALUES (?)",
                         [(name,) for name in {m.queue for m in messages}])

    def reserve(self, consumer_id: str, queues: Sequence[str], limit: int,
                horizon: float = 0.0) -> list[Delivery]:
        if limit <= 0 or not queues:
            return []
        now = self.clock.time()
        due_by = now + horizon
        if not self._anything_due(queues, due_by):
            return []  # the common idle case costs one read, no write lock
        with self._write() as conn:
            self._promote(conn, queues, due_by)
            rows, bad = [], []
            for queue in queues:
                for row in select_ready(conn, queue, due_by, limit):
                    reason = problem(row)
                    if reason is None:
                        rows.append(row)
                    else:
                        bad.append((row, reason))
            if bad:  # rows fleet did not write: each costs only itself
                set_aside(conn, bad, now, DEAD_LETTERS_KEEP)
            rows.sort(key=lambda row: (-row[3], row[0]))
            rows = rows[:limit]
            if rows:
                conn.executemany("UPDATE messages SET owner = ? WHERE seq = ?",
                                 [(consumer_id, row[0]) for row in rows])
                self._register_unknown(conn, consumer_id, queues, now)
        return [Delivery(row[1], row[2], row[4], clamp_priority(row[3]), bool(row[5]))
                for row in rows]

    def _anything_due(self, queues: Sequence[str], due_by: float) -> bool:
        marks = ",".join("?" * len(queues))
        row = self.conn.execute(
            f"SELECT EXISTS (SELECT 1 FROM messages WHERE owner IS NULL AND queue IN ({marks})"
            f" AND {ETA_DUE})"
            f" OR EXISTS (SELECT 1 FROM scheduled WHERE queue IN ({marks}) AND eta <= ?)"
            f" OR EXISTS (SELECT 1 FROM scheduled WHERE queue IN ({marks}) AND eta >= '')",
            (*queues, due_by, *queues, due_by, *queues)).fetchone()
        return bool(row[0])

    @staticmethod
    def _register_unknown(conn: sqlite3.Connection, consumer_id: str, queues: Sequence[str],
                          now: float) -> None:
        """A consumer that holds messages is always registered, so they can be recovered."""
        conn.execute("INSERT OR IGNORE INTO consumers (id, node, queues, pid, host, heartbeat) "
                     "VALUES (?, ?, ?, 0, '', ?)",
                     (consumer_id, consumer_id.split("#", 1)[0], json.dumps(list(queues)),
                      now))

    @staticmethod
    def _promote(conn: sqlite3.Connection, queues: Sequence[str], due_by: float) -> None:
        """Move the scheduled messages due by `due_by` to the ready ones; so too those whose
        eta is not a number (not written by fleet: `reserve` then sets them aside). Two
        statements each, so both use the (queue, eta) index."""
        marks = ",".join("?" * len(queues))
        for where, args in ((f"queue IN ({marks}) AND eta <= ?", (*queues, due_by)),
                            (f"queue IN ({marks}) AND eta >= ''", tuple(queues))):
            conn.execute(f"INSERT INTO dead_letters (id, queue, body, reason, at) SELECT id, "
                         f"queue, body, '{_DUPLICATE}', ? FROM scheduled WHERE {where} AND id IN "
                         f"(SELECT id FROM messages)", (due_by, *args))
            conn.execute(f"INSERT OR IGNORE INTO messages (id, queue, priority, eta, body) "
                         f"SELECT id, queue, priority, eta, body FROM scheduled WHERE {where} "
                         f"ORDER BY eta", args)
            conn.execute(f"DELETE FROM scheduled WHERE {where}", args)

    def commit(self, consumer_id: str, batch: Batch) -> None:
        if not batch:
            return
        with self._write() as conn:
            if batch.results:
                self._set_values(conn, batch.results)
            if batch.puts:
                self._insert(conn, batch.puts)
            if batch.started:
                conn.executemany("UPDATE messages SET started = 1 WHERE id = ? AND owner = ?",
                                 [(msg_id, consumer_id) for msg_id in batch.started])
            if batch.acks:
                conn.executemany("DELETE FROM messages WHERE id = ? AND owner = ?",
                                 [(msg_id, consumer_id) for msg_id in batch.acks])
            if batch.requeues:
                conn.executemany(
                    "UPDATE messages SET owner = NULL, started = 0, redelivered = 1 "
                    "WHERE id = ? AND owner = ?",
                    [(msg_id, consumer_id) for msg_id in batch.requeues])
        if batch.puts:
            self._waker.wake("q", [m.queue for m in batch.puts])

    def purge(self, queues: Sequence[str]) -> int:
        if not queues:
            return 0
        marks = ",".join("?" * len(queues))
        with self._write() as conn:
            count = conn.execute(f"DELETE FROM messages WHERE owner IS NULL AND queue IN "
                                 f"({marks})", tuple(queues)).rowcount
            count += conn.execute(f"DELETE FROM scheduled WHERE queue IN ({marks})",
                                  tuple(queues)).rowcount
            if DEAD_LETTER_QUEUE in queues:
                count += conn.execute("DELETE FROM dead_letters").rowcount
        return count

    def queue_stats(self) -> list[QueueStats]:
        conn = self.conn
        stats = {name: QueueStats(name) for (name,) in conn.execute("SELECT name FROM queues")}
        now = self.clock.time()
        for queue, ready, held, reserved in conn.execute(
                "SELECT queue, SUM(owner IS NULL AND (eta IS NULL OR eta <= ?)), "
                "SUM(owner IS NULL AND IFNULL(eta, 0) > ?), SUM(owner IS NOT NULL) FROM messages "
                "GROUP BY queue", (now, now)):
            entry = stats.setdefault(queue, QueueStats(queue))
            entry.ready, entry.scheduled, entry.reserved = int(ready), int(held), int(reserved)
        for queue, scheduled in conn.execute("SELECT queue, COUNT(*) FROM scheduled "
                                             "GROUP BY queue"):
            stats.setdefault(queue, QueueStats(queue)).scheduled += scheduled
        for (queues_json,) in conn.execute("SELECT queues FROM consumers"):
            for name in dict.fromkeys(queues_from_json(queues_json)):
                stats.setdefault(name, QueueStats(name)).consumers += 1
        dead = conn.execute("SELECT COUNT(*) FROM dead_letters").fetchone()[0]
        if dead:
            stats[DEAD_LETTER_QUEUE] = QueueStats(DEAD_LETTER_QUEUE, ready=dead)
        return [stats[name] for name in sorted(stats)]

    def dead_letter(self, consumer_id: str, delivery: Delivery, reason: str) -> None:
        with self._write() as conn:
            held = conn.execute("DELETE FROM messages WHERE id = ? AND owner = ?",
                                (delivery.id, consumer_id)).rowcount
            if not held:
                return  # not ours (any more): someone else owns it now
            conn.execute("INSERT INTO dead_letters (id, queue, body, reason, at) "
                         "VALUES (?,?,?,?,?)",
                         (delivery.id, delivery.queue, delivery.body, reason, self.clock.time()))
            conn.execute("DELETE FROM dead_letters WHERE seq <= (SELECT MAX(seq) FROM "
                         "dead_letters) - ?", (DEAD_LETTERS_KEEP,))

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = self.conn.execute(f"SELECT {raw('id')}, {raw('queue')}, {raw('body')}, "
                                 f"{raw('reason')}, at FROM dead_letters ORDER BY seq DESC "
                                 f"LIMIT ?", (limit,)).fetchall()
        return [DeadLetter(*[text_of(value) for value in row[:4]],
                           at if isinstance(at := row[4], int | float) else 0.0)
                for row in rows]

    # -- consumers --------------------------------------------------------------------------

    def register(self, consumer: ConsumerInfo) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO consumers (id, node, queues, pid, host, heartbeat, info)"
                " VALUES (?,?,?,?,?,?,?)",
                (consumer.consumer_id, consumer.node, json.dumps(consumer.queues),
                 consumer.pid, consumer.host, self.clock.time(), json.dumps(consumer.info)))

    def heartbeat(self, consumer: ConsumerInfo) -> None:
        with self._write() as conn:
            updated = conn.execute(
                "UPDATE consumers SET heartbeat = ?, info = ?, queues = ? WHERE id = ?",
                (self.clock.time(), json.dumps(consumer.info), json.dumps(consumer.queues),
                 consumer.consumer_id)).rowcount
        if not updated:
            self.register(consumer)

    def unregister(self, consumer_id: str) -> None:
        with self._write() as conn:
            conn.execute("UPDATE messages SET owner = NULL, started = 0, redelivered = 1 "
                         "WHERE owner = ?", (consumer_id,))
            conn.execute("DELETE FROM consumers WHERE id = ?", (consumer_id,))

    def consumers(self) -> list[ConsumerRecord]:
        rows = self.conn.execute("SELECT id, node, queues, pid, host, heartbeat, info "
                                 "FROM consumers ORDER BY node, id").fetchall()
        return [_consumer_record(*row) for row in rows]

    def recover(self, timeout: float) -> Recovery:
        report = Recovery()
        cutoff = self.clock.time() - timeout
        if not self.conn.execute(f"SELECT EXISTS (SELECT 1 FROM consumers WHERE "
                                 f"{HEARTBEAT_DEAD})", (cutoff,)).fetchone()[0]:
            return report
        with self._write() as conn:
            dead = [row[0] for row in conn.execute(f"SELECT id FROM consumers WHERE "
                                                   f"{HEARTBEAT_DEAD}", (cutoff,))]
            for consumer_id in dead:
                lost = conn.execute(
                    f"DELETE FROM messages WHERE owner = ? AND started = 1 RETURNING "
                    f"{raw('id')}, {raw('queue')}, {raw('body')}, priority",
                    (consumer_id,)).fetchall()
                report.lost += [(consumer_id, Delivery(text_of(i), text_of(q), text_of(b),
                                                       _priority(p), True))
                                for i, q, b, p in lost]
                report.requeued += conn.execute(
                    "UPDATE messages SET owner = NULL, redelivered = 1 WHERE owner = ?",
                    (consumer_id,)).rowcount
                conn.execute("DELETE FROM consumers WHERE id = ?", (consumer_id,))
            report.dead_consumers = dead
        return report

    # -- broadcasts -------------------------------------------------------------------------

    def publish(self, channel: str, payload: str) -> None:
        now = self.clock.time()
        with self._write() as conn:
            conn.execute("INSERT INTO broadcasts (channel, payload, at) VALUES (?,?,?)",
                         (channel, payload, now))
            self._publishes += 1
            if self._publishes % 256 == 1:
                conn.execute("DELETE FROM broadcasts WHERE at < ?", (now - BROADCAST_KEEP_SECONDS,))
        self._waker.wake("c", [channel])

    def subscribe(self, channels: Sequence[str], wake_queues: Sequence[str] = ()) -> Subscription:
        return _SQLiteSubscription(self, channels, wake_queues)


    # -- housekeeping -----------------------------------------------------------------------

    def cleanup(self) -> None:
        now = self.clock.time()
        with self._write() as conn:
            conn.execute("DELETE FROM kv WHERE expires IS NOT NULL AND expires <= ?", (now,))
            conn.execute("DELETE FROM broadcasts WHERE at < ?", (now - BROADCAST_KEEP_SECONDS,))


def _priority(value: object) -> int:
    return clamp_priority(value) if isinstance(value, int) else 0


def _consumer_record(cid: object, node: object, queues: object, pid: object, host: object,
                     heartbeat: object, info: object) -> ConsumerRecord:
    """A consumers row as a record; values fleet did not write read as unknown."""
    try:
        details = json.loads(info) if isinstance(info, str) else {}
    except (ValueError, RecursionError):
        details = {}
    return ConsumerRecord(text_of(cid), text_of(node), queues_from_json(queues),
                          pid if isinstance(pid, int) else 0, text_of(host),
                          float(heartbeat) if isinstance(heartbeat, int | float) else 0.0,
                          details if isinstance(details, dict) else {})
