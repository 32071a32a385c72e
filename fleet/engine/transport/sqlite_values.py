"""The SQLite broker's small values (the `Values` part): results, counters and leases.

One table, documented with the others at the top of `sqlite.py`:

    kv(key, value, expires)   `expires` is seconds since the epoch by the transport's clock
                              (NULL: never); leases are rows under "lease:<name>" whose value
                              is the owner

Every read ignores a row whose `expires` has passed, judged against the clock's time passed
in as a query argument (never SQLite's own `unixepoch()`), so a test's clock governs expiry
exactly; `cleanup` deletes such rows now and then.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from fleet.engine.transport.base import StoredResult
from fleet.engine.transport.sqlite_store import SQLiteStore

#: Keys per query when reading many values (SQLite limits the number of parameters).
GET_CHUNK = 500


class SQLiteValues(SQLiteStore):
    """The `Values` protocol over the `kv` table."""

    def _set_values(self, conn: sqlite3.Connection, values: Sequence[StoredResult]) -> None:
        now = self.clock.time()
        conn.executemany("INSERT OR REPLACE INTO kv (key, value, expires) VALUES (?,?,?)",
                         [(v.key, v.value, now + v.ttl if v.ttl else None) for v in values])

    def set_values(self, values: Sequence[StoredResult]) -> None:
        if values:
            with self._write() as conn:
                self._set_values(conn, values)

    def get_value(self, key: str) -> str | None:
        row = self.conn.execute("SELECT value FROM kv WHERE key = ? AND "
                                "(expires IS NULL OR expires > ?)",
                                (key, self.clock.time())).fetchone()
        return row[0] if row else None

    def get_values(self, keys: Sequence[str]) -> list[str | None]:
        if not keys:
            return []
        found: dict[str, str] = {}
        now = self.clock.time()
        for start in range(0, len(keys), GET_CHUNK):
            chunk = keys[start:start + GET_CHUNK]
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
        now = self.clock.time()
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
                                 (escaped + "%", self.clock.time())).fetchall()
        return dict(rows)

    def incr(self, key: str, amount: int = 1, ttl: float | None = None) -> int:
        now = self.clock.time()
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
        now = self.clock.time()
        with self._write() as conn:
            changed = conn.execute(
                "INSERT INTO kv (key, value, expires) VALUES (?, ?, ?) "
                "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
                "expires = excluded.expires WHERE kv.value = excluded.value OR kv.expires <= ? "
                # (a lease row fleet did not write, with no expiry or one that is not a
                # number, is free: it must not hold the lease forever)
                "OR kv.expires IS NULL OR kv.expires >= ''",
                (f"lease:{name}", owner, now + ttl, now)).rowcount
        return bool(changed)

    def release_lease(self, name: str, owner: str) -> None:
        with self._write() as conn:
            conn.execute("DELETE FROM kv WHERE key = ? AND value = ?", (f"lease:{name}", owner))
