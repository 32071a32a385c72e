"""`sqlite:///path/to/file.db`: the default, embedded broker. No server needed.

For one machine: any number of producer and node processes share one database file. It
follows the contract in `base.py`; what makes it safe with many processes:

* WAL journal (readers never block the writer), `synchronous=NORMAL` (durable across process
  crashes; a power cut may lose the last transactions), and a busy timeout so writers queue
  up instead of failing with "database is locked".
* Every write is a short `BEGIN IMMEDIATE` transaction: the write lock is taken up front, so
  two writers never deadlock upgrading a read lock. Reads run in autocommit.
* Reservations are rows with an owner (lease columns), never deleted on read: a message is
  deleted only by its owner's ack, and a dead owner's rows return to their queue.

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
consumers(id, node, queues, pid, host, heartbeat, info)   registered consumers.
kv(key, value, expires)      results, counters, leases and other small values.
dead_letters(seq, id, queue, body, reason, at)            moved-aside messages.
broadcasts(seq, channel, payload, at)                     a short backlog of broadcasts;
    subscribers read rows newer than the last one they saw; rows older than a minute go.

Wake-ups: `<db>.wake/` next to the file holds a Unix datagram socket per subscriber, so a
put or a broadcast wakes the nodes of that queue or channel at once instead of at their
next poll (see `sqlite_wake`).

Options: `connect_timeout` is the busy timeout in seconds (at least 10 s is used).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

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
    StoredResult,
    Subscription,
    Transport,
)
from fleet.engine.transport.sqlite_wake import WakeSender, WakeSocket
from fleet.exceptions import BrokerUnavailable
from fleet.files import check_directory, existing_regular, make_directory, open_regular
from fleet.operator_errors import ConfigError, PermissionProblem

#: Version of the table layout. Version 2 added messages.eta; `_migrate` upgrades older
#: databases in place, and a database from a newer fleet is refused with a clear message.
SCHEMA_VERSION = 2
BROADCAST_KEEP_SECONDS = 60.0
DEAD_LETTERS_KEEP = 10000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    eta REAL,
    body TEXT NOT NULL,
    owner TEXT,
    started INTEGER NOT NULL DEFAULT 0,
    redelivered INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_ready ON messages (queue, priority DESC, seq)
    WHERE owner IS NULL;
CREATE INDEX IF NOT EXISTS messages_owner ON messages (owner) WHERE owner IS NOT NULL;
CREATE TABLE IF NOT EXISTS scheduled (
    id TEXT PRIMARY KEY,
    queue TEXT NOT NULL,
    priority INTEGER NOT NULL DEFAULT 0,
    eta REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS scheduled_due ON scheduled (queue, eta);
CREATE TABLE IF NOT EXISTS queues (name TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS consumers (
    id TEXT PRIMARY KEY,
    node TEXT NOT NULL,
    queues TEXT NOT NULL,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    heartbeat REAL NOT NULL,
    info TEXT NOT NULL DEFAULT '{}'
);
CREATE TABLE IF NOT EXISTS kv (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires REAL);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL, queue TEXT NOT NULL, body TEXT NOT NULL, reason TEXT NOT NULL,
    at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS broadcasts (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    channel TEXT NOT NULL, payload TEXT NOT NULL, at REAL NOT NULL
);
"""


def path_from_url(url: str) -> Path:
    """sqlite:///abs/path.db -> /abs/path.db; sqlite://relative.db -> ./relative.db."""
    rest = url.split("://", 1)[1]
    rest = rest.split("?", 1)[0]
    if not rest or rest == "/":
        raise ConfigError(f"sqlite URL {url!r} names no file",
                          "write sqlite:///absolute/path/fleet.db (three slashes)")
    if rest.startswith("/"):
        return Path(rest).expanduser()
    return Path(os.path.expanduser(rest)).absolute()


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


class SQLiteTransport(Transport):
    schemes = ("sqlite",)
    transient_errors = (sqlite3.OperationalError, BrokerUnavailable)

    def __init__(self, url: str, options: dict | None = None):
        super().__init__(url, options)
        self.path = path_from_url(url)
        self.busy_timeout = max(10.0, float(self.options.get("connect_timeout") or 0))
        self._local = threading.local()
        self._pid = os.getpid()
        self._initialised = False
        self._publishes = 0
        self._waker = WakeSender(self.path)

    # -- connections ------------------------------------------------------------------------

    def new_connection(self) -> sqlite3.Connection:
        self._ensure_file()
        check_directory(self.path.parent, f"the SQLite broker {self.path}")  # (root only)
        try:
            conn = sqlite3.connect(str(self.path), timeout=self.busy_timeout,
                                   isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout * 1000)}")
            conn.execute("PRAGMA synchronous = NORMAL")
            conn.execute("PRAGMA foreign_keys = OFF")
        except sqlite3.Error as exc:
            raise BrokerUnavailable(f"cannot open the SQLite broker {self.path} ({exc})",
                                    "check the path and its permissions") from None
        if not self._initialised:
            self._initialise(conn)
        return conn

    def _ensure_file(self) -> None:
        """Create the database file (0600), never through a link (fleet.files): SQLite
        itself follows links, so a link is refused here before it opens the file. An
        existing file is only looked at, never opened: closing a descriptor of it would drop
        the POSIX locks this process's SQLite connections hold on it."""
        if existing_regular(self.path, "SQLite broker"):
            return
        directory = self.path.parent
        try:
            make_directory(directory, 0o755, "the SQLite broker")
            os.close(open_regular(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600,
                                  "SQLite broker"))
        except FileExistsError:
            existing_regular(self.path, "SQLite broker")  # made meanwhile: still no link
        except FileNotFoundError:
            return  # a missing directory (removed meanwhile): sqlite3 says what it cannot open
        except PermissionError:
            raise PermissionProblem(
                f"cannot create the SQLite broker {self.path}: permission denied",
                f"create {directory} for this user (e.g. `sudo install -d -o $USER {directory}`)"
                " or point the broker elsewhere with -b sqlite:///path/fleet.db",
            ) from None

    def _initialise(self, conn: sqlite3.Connection) -> None:
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise BrokerUnavailable(f"cannot switch {self.path} to WAL mode (got {mode})",
                                    "put the database on a local file system")
        conn.executescript(_SCHEMA)  # idempotent: every statement is IF NOT EXISTS
        with self._write(conn):
            conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                         (str(SCHEMA_VERSION),))
            found = int(conn.execute("SELECT value FROM meta WHERE key = 'schema_version'")
                        .fetchone()[0])
            if found > SCHEMA_VERSION:
                raise BrokerUnavailable(
                    f"the SQLite broker {self.path} was created by a newer fleet (schema "
                    f"{found}; this fleet knows {SCHEMA_VERSION})",
                    "upgrade fleet on this machine, or use another database")
            if found < SCHEMA_VERSION:
                self._migrate(conn, found)
        self._initialised = True

    def _migrate(self, conn: sqlite3.Connection, found: int) -> None:
        """Bring an older database up to SCHEMA_VERSION (inside the caller's transaction)."""
        columns = {row[1] for row in conn.execute("PRAGMA table_info(messages)")}
        if found < 2 and "eta" not in columns:
            conn.execute("ALTER TABLE messages ADD COLUMN eta REAL")
        conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'",
                     (str(SCHEMA_VERSION),))

    @property
    def conn(self) -> sqlite3.Connection:
        if self._pid != os.getpid():  # forked: never touch the parent's connections
            self._local = threading.local()
            self._pid = os.getpid()
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self.new_connection()
        return conn

    @contextmanager
    def _write(self, conn: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        """A short write transaction that takes the write lock at once (BEGIN IMMEDIATE)."""
        conn = conn or self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def ping(self) -> None:
        try:
            self.conn.execute("SELECT 1").fetchone()
        except sqlite3.Error as exc:
            raise BrokerUnavailable(f"SQLite broker {self.path} is not usable ({exc})") from None

    def close(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None and self._pid == os.getpid():
            conn.close()
        self._local = threading.local()
        self._waker.close()

    # -- messages ---------------------------------------------------------------------------

    def put(self, messages: Sequence[Outgoing]) -> None:
        if messages:
            with self._write() as conn:
                self._insert(conn, messages)
            self._waker.wake("q", [m.queue for m in messages])

    @staticmethod
    def _insert(conn: sqlite3.Connection, messages: Sequence[Outgoing]) -> None:
        now = time.time()
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
        due_by = time.time() + horizon
        if not self._anything_due(queues, due_by):
            return []  # the common idle case costs one read, no write lock
        with self._write() as conn:
            self._promote(conn, queues, due_by)
            rows = []
            for queue in queues:
                rows += conn.execute(
                    "SELECT seq, id, queue, priority, body, redelivered FROM messages "
                    "WHERE owner IS NULL AND queue = ? AND (eta IS NULL OR eta <= ?) "
                    "ORDER BY priority DESC, seq LIMIT ?", (queue, due_by, limit)).fetchall()
            rows.sort(key=lambda row: (-row[3], row[0]))
            rows = rows[:limit]
            if rows:
                conn.executemany("UPDATE messages SET owner = ? WHERE seq = ?",
                                 [(consumer_id, row[0]) for row in rows])
                self._register_unknown(conn, consumer_id, queues)
        return [Delivery(row[1], row[2], row[4], row[3], bool(row[5])) for row in rows]

    def _anything_due(self, queues: Sequence[str], due_by: float) -> bool:
        marks = ",".join("?" * len(queues))
        row = self.conn.execute(
            f"SELECT EXISTS (SELECT 1 FROM messages WHERE owner IS NULL AND queue IN ({marks})"
            f" AND (eta IS NULL OR eta <= ?))"
            f" OR EXISTS (SELECT 1 FROM scheduled WHERE queue IN ({marks}) AND eta <= ?)",
            (*queues, due_by, *queues, due_by)).fetchone()
        return bool(row[0])

    @staticmethod
    def _register_unknown(conn: sqlite3.Connection, consumer_id: str,
                          queues: Sequence[str]) -> None:
        """A consumer that holds messages is always registered, so they can be recovered."""
        conn.execute("INSERT OR IGNORE INTO consumers (id, node, queues, pid, host, heartbeat) "
                     "VALUES (?, ?, ?, 0, '', ?)",
                     (consumer_id, consumer_id.split("#", 1)[0], json.dumps(list(queues)),
                      time.time()))

    @staticmethod
    def _promote(conn: sqlite3.Connection, queues: Sequence[str], due_by: float) -> None:
        marks = ",".join("?" * len(queues))
        where = f"queue IN ({marks}) AND eta <= ?"
        conn.execute(f"INSERT INTO messages (id, queue, priority, eta, body) "
                     f"SELECT id, queue, priority, eta, body FROM scheduled WHERE {where} "
                     f"ORDER BY eta", (*queues, due_by))
        conn.execute(f"DELETE FROM scheduled WHERE {where}", (*queues, due_by))

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
        now = time.time()
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
            for name in json.loads(queues_json):
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
                         (delivery.id, delivery.queue, delivery.body, reason, time.time()))
            conn.execute("DELETE FROM dead_letters WHERE seq <= (SELECT MAX(seq) FROM "
                         "dead_letters) - ?", (DEAD_LETTERS_KEEP,))

    def dead_letters(self, limit: int = 100) -> list[DeadLetter]:
        rows = self.conn.execute("SELECT id, queue, body, reason, at FROM dead_letters "
                                 "ORDER BY seq DESC LIMIT ?", (limit,)).fetchall()
        return [DeadLetter(*row) for row in rows]

    # -- consumers --------------------------------------------------------------------------

    def register(self, consumer: ConsumerInfo) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO consumers (id, node, queues, pid, host, heartbeat, info)"
                " VALUES (?,?,?,?,?,?,?)",
                (consumer.consumer_id, consumer.node, json.dumps(consumer.queues),
                 consumer.pid, consumer.host, time.time(), json.dumps(consumer.info)))

    def heartbeat(self, consumer: ConsumerInfo) -> None:
        with self._write() as conn:
            updated = conn.execute(
                "UPDATE consumers SET heartbeat = ?, info = ?, queues = ? WHERE id = ?",
                (time.time(), json.dumps(consumer.info), json.dumps(consumer.queues),
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
        return [ConsumerRecord(cid, node, json.loads(queues), pid, host, heartbeat,
                               json.loads(info))
                for cid, node, queues, pid, host, heartbeat, info in rows]

    def recover(self, timeout: float) -> Recovery:
        report = Recovery()
        cutoff = time.time() - timeout
        if not self.conn.execute("SELECT EXISTS (SELECT 1 FROM consumers WHERE heartbeat < ?)",
                                 (cutoff,)).fetchone()[0]:
            return report
        with self._write() as conn:
            dead = [row[0] for row in conn.execute("SELECT id FROM consumers WHERE heartbeat < ?",
                                                   (cutoff,))]
            for consumer_id in dead:
                lost = conn.execute(
                    "DELETE FROM messages WHERE owner = ? AND started = 1 "
                    "RETURNING id, queue, body, priority", (consumer_id,)).fetchall()
                report.lost += [(consumer_id, Delivery(i, q, b, p, True)) for i, q, b, p in lost]
                report.requeued += conn.execute(
                    "UPDATE messages SET owner = NULL, redelivered = 1 WHERE owner = ?",
                    (consumer_id,)).rowcount
                conn.execute("DELETE FROM consumers WHERE id = ?", (consumer_id,))
            report.dead_consumers = dead
        return report

    # -- broadcasts -------------------------------------------------------------------------

    def publish(self, channel: str, payload: str) -> None:
        now = time.time()
        with self._write() as conn:
            conn.execute("INSERT INTO broadcasts (channel, payload, at) VALUES (?,?,?)",
                         (channel, payload, now))
            self._publishes += 1
            if self._publishes % 256 == 1:
                conn.execute("DELETE FROM broadcasts WHERE at < ?", (now - BROADCAST_KEEP_SECONDS,))
        self._waker.wake("c", [channel])

    def subscribe(self, channels: Sequence[str], wake_queues: Sequence[str] = ()) -> Subscription:
        return _SQLiteSubscription(self, channels, wake_queues)

    # -- values -----------------------------------------------------------------------------

    @staticmethod
    def _set_values(conn: sqlite3.Connection, values: Sequence[StoredResult]) -> None:
        now = time.time()
        conn.executemany("INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?,?,?)",
                         [(v.key, v.value, now + v.ttl if v.ttl else None) for v in values])

    def set_values(self, values: Sequence[StoredResult]) -> None:
        if values:
            with self._write() as conn:
                self._set_values(conn, values)

    def get_value(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM kv WHERE key = ? AND "
                                "(expires IS NULL OR expires > ?)", (key, time.time())).fetchone()
        return row[0] if row else None

    def get_values(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []
        found: dict[str, str] = {}
        now = time.time()
        for start in range(0, len(keys), 500):
            chunk = keys[start:start + 500]
            marks = ",".join("?" * len(chunk))
            found.update(self.conn.execute(
                f"SELECT key, value FROM kv WHERE key IN ({marks}) AND "
                f"(expires IS NULL OR expires > ?)", (*chunk, now)).fetchall())
        return [found.get(key) for key in keys]

    def delete_values(self, keys: Sequence[str]) -> None:
        if keys:
            with self._write() as conn:
                conn.executemany("DELETE FROM kv WHERE key = ?", [(key,) for key in keys])

    def add_value(self, key: str, value: str, ttl: float | None = None) -> bool:
        now = time.time()
        with self._write() as conn:
            conn.execute("DELETE FROM kv WHERE key = ? AND expires <= ?", (key, now))
            inserted = conn.execute("INSERT OR IGNORE INTO kv (key, value, expires) "
                                    "VALUES (?,?,?)",
                                    (key, value, now + ttl if ttl else None)).rowcount
        return bool(inserted)

    def values_with_prefix(self, prefix: str) -> dict[str, str]:
        escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        rows = self.conn.execute("SELECT key, value FROM kv WHERE key LIKE ? ESCAPE '\\' AND "
                                 "(expires IS NULL OR expires > ?)",
                                 (escaped + "%", time.time())).fetchall()
        return dict(rows)

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        now = time.time()
        expires = now + ttl if ttl else None
        with self._write() as conn:
            row = conn.execute(
                "INSERT INTO kv (key, value, expires) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET "
                "value = CASE WHEN kv.expires IS NOT NULL AND kv.expires <= ? THEN ? "
                "ELSE CAST(kv.value AS INTEGER) + ? END, "
                "expires = COALESCE(excluded.expires, CASE WHEN kv.expires <= ? THEN NULL "
                "ELSE kv.expires END) "
                "RETURNING value",
                (key, str(amount), expires, now, amount, amount, now)).fetchone()
        return int(row[0])

    def acquire_lease(self, name: str, owner: str, ttl: float) -> bool:
        now = time.time()
        with self._write() as conn:
            changed = conn.execute(
                "INSERT INTO kv (key, value, expires) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "expires = excluded.expires WHERE kv.value = excluded.value OR kv.expires <= ?",
                (f"lease:{name}", owner, now + ttl, now)).rowcount
        return bool(changed)

    def release_lease(self, name: str, owner: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM kv WHERE key = ? AND value = ?", (f"lease:{name}", owner))

    # -- housekeeping -----------------------------------------------------------------------

    def cleanup(self) -> None:
        now = time.time()
        with self._write() as conn:
            conn.execute("DELETE FROM kv WHERE expires IS NOT NULL AND expires <= ?", (now,))
            conn.execute("DELETE FROM broadcasts WHERE at < ?", (now - BROADCAST_KEEP_SECONDS,))
