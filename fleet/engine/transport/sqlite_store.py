"""The SQLite broker's file, its tables and its connections (the `Connection` part).

The tables and how they are used are documented at the top of `sqlite.py`; this module
creates them (and migrates an older file in place), opens one connection per thread, and
runs every write as a short `BEGIN IMMEDIATE` transaction:

* WAL journal (readers never block the writer), `synchronous=NORMAL` (durable across process
  crashes; a power cut may lose the last transactions), and a busy timeout so writers queue
  up instead of failing with "database is locked".
* Every write takes the write lock up front, so two writers never deadlock upgrading a read
  lock. Reads run in autocommit.
* A forked child never touches its parent's connections: it opens its own.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fleet.engine.transport.base import Transport
from fleet.engine.transport.clock import Clock
from fleet.exceptions import BrokerDataError, BrokerUnavailable
from fleet.files import check_directory, existing_regular, make_directory, open_regular
from fleet.operator_errors import ConfigError, PermissionProblem

#: Version of the table layout. Version 2 added messages.eta; `_migrate` upgrades older
#: databases in place, and a database from a newer fleet is refused with a clear message.
SCHEMA_VERSION = 2

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




class SQLiteStore(Transport):
    """A database file shared by every process of one machine; see the module docstring."""

    schemes = ("sqlite",)
    transient_errors = (sqlite3.OperationalError, BrokerUnavailable)
    data_errors = (sqlite3.DatabaseError, BrokerDataError)

    def __init__(self, url: str, options: dict | None = None, clock: Clock | None = None):
        super().__init__(url, options, clock)
        self.path = path_from_url(url)
        self.busy_timeout = max(10.0, float(self.options.get("connect_timeout") or 0))
        self._local = threading.local()
        self._pid = os.getpid()
        self._initialised = False

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
            text = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'"
                                ).fetchone()[0]
            try:
                found = int(text)
            except (TypeError, ValueError):
                raise BrokerDataError(
                    f"the SQLite broker {self.path} has an unreadable schema version "
                    f"{str(text)[:40]!r} (not written by fleet)",
                    "restore the file from a backup, or move it away and start afresh") from None
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

