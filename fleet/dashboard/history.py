"""The dashboard's memory: a local SQLite file that keeps what the events said, bounded.

Flower forgets everything when it restarts and slows down as its in-memory task list grows;
this store survives a restart of the dashboard and answers every page from indexes, so the
task list costs the same with 100 or 100,000 recorded tasks.

Layout (one file, WAL mode, created 0600)::

    tasks(seq, id, name, state, node, queue, args, kwargs, result, exception, runtime,
          retries, sent, received, started, finished, updated, eta, expires,
          parent_id, root_id, group_id, resent_from)
        one row per task id, merged from its events; `seq` is the order the dashboard
        first saw it in (newest first on every page); indexes on (state, seq), (name, seq),
        (node, seq) and parent_id. At most `max_tasks` rows: the oldest go first.
    counts(bucket, kind, n)
        events per BUCKET seconds (received, succeeded, failed, retried, revoked, rejected)
        for the throughput and failure charts; kept `retention` seconds.
    queue_samples(at, queue, ready, scheduled, reserved, consumers)
        queue lengths sampled by the ingester, for the queue chart; kept `retention` seconds.
    nodes(name, host, pid, info, last_seen, offline)
        the last worker event of each node, so a node that went away is still listed.
    meta(key, value)
        the dashboard's secret (sessions and CSRF tokens survive a restart).

One thread writes (the ingester, see fleet.dashboard.ingest); request handlers read through
connections of their own (one per thread), which WAL lets run beside the writer.
"""

from __future__ import annotations

import json
import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fleet.files import check_directory, existing_regular, make_directory, open_regular

#: Seconds per bucket of the event counts behind the charts.
BUCKET = 10
#: Event type -> the state it puts the task in (task-updated: the state it carries).
EVENT_STATES = {
    "task-sent": "PENDING", "task-received": "RECEIVED", "task-started": "STARTED",
    "task-succeeded": "SUCCESS", "task-failed": "FAILURE", "task-retried": "RETRY",
    "task-revoked": "REVOKED", "task-rejected": "REJECTED",
}
STATES = ("PENDING", "RECEIVED", "STARTED", "SUCCESS", "FAILURE", "RETRY", "REVOKED",
          "REJECTED")
#: Event type -> the chart series it counts in.
COUNTED = {"task-received": "received", "task-succeeded": "succeeded",
           "task-failed": "failed", "task-retried": "retried", "task-revoked": "revoked",
           "task-rejected": "rejected"}
#: Columns a task list can be filtered on exactly.
FILTERS = ("state", "name", "node")
LIST_COLUMNS = ("seq", "id", "name", "state", "node", "queue", "runtime", "retries",
                "received", "started", "finished", "updated")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    name TEXT, state TEXT NOT NULL, node TEXT, queue TEXT,
    args TEXT, kwargs TEXT, result TEXT, exception TEXT,
    runtime REAL, retries INTEGER,
    sent REAL, received REAL, started REAL, finished REAL, updated REAL NOT NULL,
    eta REAL, expires REAL,
    parent_id TEXT, root_id TEXT, group_id TEXT, resent_from TEXT
);
CREATE INDEX IF NOT EXISTS tasks_state ON tasks(state, seq);
CREATE INDEX IF NOT EXISTS tasks_name ON tasks(name, seq);
CREATE INDEX IF NOT EXISTS tasks_node ON tasks(node, seq);
CREATE INDEX IF NOT EXISTS tasks_parent ON tasks(parent_id);
CREATE TABLE IF NOT EXISTS counts (
    bucket INTEGER NOT NULL, kind TEXT NOT NULL, n INTEGER NOT NULL,
    PRIMARY KEY (bucket, kind)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS queue_samples (
    at INTEGER NOT NULL, queue TEXT NOT NULL, ready INTEGER, scheduled INTEGER,
    reserved INTEGER, consumers INTEGER, PRIMARY KEY (at, queue)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS nodes (
    name TEXT PRIMARY KEY, host TEXT, pid INTEGER, info TEXT, last_seen REAL,
    offline INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT);
"""

# One event -> one upsert. A field an event does not carry (NULL) keeps its stored value;
# the state follows the newest event (a late 'received' never hides a 'succeeded').
_UPSERT = """
INSERT INTO tasks (id, name, state, node, queue, args, kwargs, result, exception, runtime,
                   retries, sent, received, started, finished, updated, eta, expires,
                   parent_id, root_id, group_id, resent_from)
VALUES (:id, :name, :state, :node, :queue, :args, :kwargs, :result, :exception, :runtime,
        :retries, :sent, :received, :started, :finished, :updated, :eta, :expires,
        :parent_id, :root_id, :group_id, :resent_from)
ON CONFLICT(id) DO UPDATE SET
    state = CASE WHEN excluded.updated >= tasks.updated THEN excluded.state
                 ELSE tasks.state END,
    updated = max(excluded.updated, tasks.updated),
    name = coalesce(excluded.name, tasks.name),
    node = coalesce(excluded.node, tasks.node),
    queue = coalesce(excluded.queue, tasks.queue),
    args = coalesce(excluded.args, tasks.args),
    kwargs = coalesce(excluded.kwargs, tasks.kwargs),
    result = coalesce(excluded.result, tasks.result),
    exception = coalesce(excluded.exception, tasks.exception),
    runtime = coalesce(excluded.runtime, tasks.runtime),
    retries = coalesce(excluded.retries, tasks.retries),
    sent = coalesce(tasks.sent, excluded.sent),
    received = coalesce(excluded.received, tasks.received),
    started = coalesce(excluded.started, tasks.started),
    finished = coalesce(excluded.finished, tasks.finished),
    eta = coalesce(excluded.eta, tasks.eta),
    expires = coalesce(excluded.expires, tasks.expires),
    parent_id = coalesce(excluded.parent_id, tasks.parent_id),
    root_id = coalesce(excluded.root_id, tasks.root_id),
    group_id = coalesce(excluded.group_id, tasks.group_id),
    resent_from = coalesce(excluded.resent_from, tasks.resent_from)
"""

_TASK_FIELDS = ("id", "name", "state", "node", "queue", "args", "kwargs", "result",
                "exception", "runtime", "retries", "sent", "received", "started", "finished",
                "updated", "eta", "expires", "parent_id", "root_id", "group_id", "resent_from")


def _json_field(value: Any) -> str | None:
    return None if value is None else json.dumps(value, default=repr)


def _number(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def task_row(event: dict[str, Any]) -> dict[str, Any] | None:
    """The columns one task event sets (None for events that are not about a task)."""
    kind = event.get("type")
    state = EVENT_STATES.get(kind or "")
    if kind == "task-updated" and isinstance(event.get("state"), str):
        state = event["state"]  # a state of the task's own (update_state): PROGRESS, ...
    task_id = event.get("uuid")
    if state is None or not isinstance(task_id, str) or not task_id:
        return None
    stamp = _number(event.get("timestamp")) or time.time()
    row = dict.fromkeys(_TASK_FIELDS)
    row.update(id=task_id, state=state, updated=stamp, name=event.get("name") or None,
               node=event.get("node") or None, queue=event.get("queue") or None,
               runtime=_number(event.get("runtime")), eta=_number(event.get("eta")),
               expires=_number(event.get("expires")))
    for key in ("parent_id", "root_id", "group_id", "resent_from"):
        if isinstance(event.get(key), str):
            row[key] = event[key]
    if "args" in event:
        row["args"] = _json_field(event["args"])
    if "kwargs" in event:
        row["kwargs"] = _json_field(event["kwargs"])
    if isinstance(event.get("retries"), int):
        row["retries"] = event["retries"]
    if kind == "task-succeeded":
        row["result"] = _json_field(event.get("result"))
    if kind == "task-updated":
        row["result"] = _json_field(event.get("info"))
        return row
    if "exception" in event or "reason" in event:
        row["exception"] = str(event.get("exception") or event.get("reason"))
    moment = {"task-sent": "sent", "task-received": "received", "task-started": "started"}
    row[moment.get(kind or "", "finished")] = stamp
    return row


@dataclass
class Page:
    """One page of the task list: rows newest first, and cursors to the pages around it."""

    rows: list[dict[str, Any]]
    total: int
    newer: int | None = None  #: `after` cursor of the previous (newer) page, if any
    older: int | None = None  #: `before` cursor of the next (older) page, if any


@dataclass
class Ingested:
    """What one batch of events changed (for live updates and metrics)."""

    tasks: list[dict[str, Any]] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)


class History:
    """The SQLite store. Thread-safe: every thread gets its own connection."""

    def __init__(self, path: str | Path, max_tasks: int = 100_000,
                 retention: float = 24 * 3600.0):
        self.path = Path(path)
        self.max_tasks = int(max_tasks)
        self.retention = float(retention)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        make_directory(self.path.parent, 0o700, "the dashboard's history")
        check_directory(self.path.parent, f"the dashboard's history {self.path}")
        # The file holds the session secret: readable by its owner only; never through a
        # link (SQLite would follow one), and as root never in another user's directory.
        # An existing one is not opened: closing a descriptor of it would drop this
        # process's SQLite locks on it.
        if not existing_regular(self.path, "history file"):
            os.close(open_regular(self.path, os.O_RDWR | os.O_CREAT, 0o600, "history file"))
        self._db().executescript(_SCHEMA)  # (executescript manages its own transaction)

    # -- connections ---------------------------------------------------------------------------

    def _db(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = sqlite3.connect(self.path, timeout=10.0, isolation_level=None,
                                 check_same_thread=False)
            db.row_factory = sqlite3.Row
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute("PRAGMA busy_timeout=10000")
            self._local.db = db
            with self._lock:
                self._connections.append(db)
        return db

    class _Transaction:
        def __init__(self, db: sqlite3.Connection):
            self.db = db

        def __enter__(self) -> sqlite3.Connection:
            self.db.execute("BEGIN IMMEDIATE")
            return self.db

        def __exit__(self, kind: Any, *rest: Any) -> None:
            self.db.execute("COMMIT" if kind is None else "ROLLBACK")

    def _write(self) -> History._Transaction:
        return History._Transaction(self._db())

    def close(self) -> None:
        with self._lock:
            connections, self._connections = self._connections, []
        for db in connections:
            db.close()
        self._local = threading.local()

    # -- the secret ----------------------------------------------------------------------------

    def secret(self) -> bytes:
        """A random key made once per history file (signs sessions and CSRF tokens)."""
        with self._write() as db:
            found = db.execute("SELECT value FROM meta WHERE key = 'secret'").fetchone()
            if found is None:
                value = secrets.token_hex(32)
                db.execute("INSERT INTO meta (key, value) VALUES ('secret', ?)", (value,))
                return bytes.fromhex(value)
        return bytes.fromhex(found[0])

    # -- writing -------------------------------------------------------------------------------

    def ingest(self, events: Iterable[dict[str, Any]], now: float | None = None) -> Ingested:
        """Fold a batch of events in, in one transaction; drop the oldest tasks past
        `max_tasks`."""
        rows, counts, workers = [], {}, {}
        for event in events:
            kind = event.get("type") or ""
            if kind.startswith("worker-") and event.get("node"):
                workers[event["node"]] = event
                continue
            row = task_row(event)
            if row is None:
                continue
            rows.append(row)
            if kind in COUNTED:
                key = (int(row["updated"] // BUCKET) * BUCKET, COUNTED[kind])
                counts[key] = counts.get(key, 0) + 1
        changed = Ingested(tasks=rows, nodes=sorted(workers))
        if not (rows or counts or workers):
            return changed
        with self._write() as db:
            if rows:
                db.executemany(_UPSERT, rows)
            db.executemany("INSERT INTO counts (bucket, kind, n) VALUES (?, ?, ?) "
                           "ON CONFLICT(bucket, kind) DO UPDATE SET n = n + excluded.n",
                           [(bucket, kind, n) for (bucket, kind), n in counts.items()])
            db.executemany(
                "INSERT OR REPLACE INTO nodes (name, host, pid, info, last_seen, offline) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                [(name, event.get("hostname"), event.get("pid"), json.dumps(event, default=repr),
                  _number(event.get("timestamp")) or now or time.time(),
                  int(event.get("type") == "worker-offline"))
                 for name, event in workers.items()])
            if rows:
                self._trim(db)
        return changed

    def _trim(self, db: sqlite3.Connection) -> None:
        newest = db.execute("SELECT max(seq) FROM tasks").fetchone()[0] or 0
        db.execute("DELETE FROM tasks WHERE seq <= ?", (newest - self.max_tasks,))

    def record_queues(self, stats: Sequence[Any], now: float | None = None) -> None:
        """One sample of every queue's length (QueueStats records)."""
        at = int(now if now is not None else time.time())
        with self._write() as db:
            db.executemany("INSERT OR REPLACE INTO queue_samples VALUES (?, ?, ?, ?, ?, ?)",
                           [(at, s.name, s.ready, s.scheduled, s.reserved, s.consumers)
                            for s in stats])

    def expire(self, now: float | None = None) -> None:
        """Forget chart data and offline nodes older than `retention`."""
        horizon = (now if now is not None else time.time()) - self.retention
        with self._write() as db:
            db.execute("DELETE FROM counts WHERE bucket < ?", (horizon,))
            db.execute("DELETE FROM queue_samples WHERE at < ?", (horizon,))
            db.execute("DELETE FROM nodes WHERE last_seen < ?", (horizon,))

    def note_resent(self, original: str, new_id: str, name: str, queue: str | None,
                    args: Any, kwargs: Any) -> None:
        """Remember that `new_id` is a re-send of `original` (before its events arrive)."""
        stamp = time.time()
        row = dict.fromkeys(_TASK_FIELDS)
        row.update(id=new_id, name=name, state="PENDING", queue=queue, sent=stamp,
                   updated=stamp, args=_json_field(args), kwargs=_json_field(kwargs),
                   resent_from=original)
        with self._write() as db:
            db.execute(_UPSERT, row)
            self._trim(db)

    # -- reading -------------------------------------------------------------------------------

    def page(self, filters: dict[str, str] | None = None, limit: int = 50,
             before: int | None = None, after: int | None = None) -> Page:
        """Tasks newest first, filtered exactly on state, name and node; keyset paging
        (`before`/`after` a seq), so every page costs the same however deep it is."""
        where, params = [], []
        for key, value in (filters or {}).items():
            if key in FILTERS and value:
                where.append(f"{key} = ?")
                params.append(value)
        db = self._db()
        condition = " AND ".join(where) or "1"
        total = db.execute(f"SELECT count(*) FROM tasks WHERE {condition}",
                           params).fetchone()[0]
        columns = ", ".join(LIST_COLUMNS)
        if after is not None:
            found = db.execute(f"SELECT {columns} FROM tasks WHERE {condition} AND seq > ? "
                               "ORDER BY seq ASC LIMIT ?", [*params, after, limit + 1])
            rows = [dict(row) for row in found][::-1]
            more_newer = len(rows) > limit
            rows = rows[-limit:] if more_newer else rows
            more_older = bool(rows) and self._exists(condition, params, "<", rows[-1]["seq"])
        else:
            query = f"SELECT {columns} FROM tasks WHERE {condition}"
            args: list[Any] = list(params)
            if before is not None:
                query += " AND seq < ?"
                args.append(before)
            found = db.execute(query + " ORDER BY seq DESC LIMIT ?", [*args, limit + 1])
            rows = [dict(row) for row in found]
            more_older = len(rows) > limit
            rows = rows[:limit]
            more_newer = before is not None and bool(rows) and \
                self._exists(condition, params, ">", rows[0]["seq"])
        return Page(rows, total, rows[0]["seq"] if rows and more_newer else None,
                    rows[-1]["seq"] if rows and more_older else None)

    def _exists(self, condition: str, params: list, op: str, seq: int) -> bool:
        query = f"SELECT 1 FROM tasks WHERE {condition} AND seq {op} ? LIMIT 1"
        return self._db().execute(query, [*params, seq]).fetchone() is not None

    def task(self, task_id: str) -> dict[str, Any] | None:
        found = self._db().execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
        if found is None:
            return None
        row = dict(found)
        for key in ("args", "kwargs", "result"):
            if row[key] is not None:
                row[key] = json.loads(row[key])
        return row

    def children(self, task_id: str, limit: int = 200) -> list[dict[str, Any]]:
        """Tasks whose parent is `task_id`, or that re-send it."""
        found = self._db().execute(
            "SELECT id, name, state, node FROM tasks WHERE parent_id = ? UNION "
            "SELECT id, name, state, node FROM tasks WHERE resent_from = ? LIMIT ?",
            (task_id, task_id, limit))
        return [dict(row) for row in found]

    def state_counts(self) -> dict[str, int]:
        found = self._db().execute("SELECT state, count(*) FROM tasks GROUP BY state")
        return {state: n for state, n in found}

    def counts_by_name(self) -> list[tuple[str, str, int]]:
        """(name, state, count) for every recorded task name and state."""
        found = self._db().execute(
            "SELECT coalesce(name, '?'), state, count(*) FROM tasks GROUP BY name, state")
        return [tuple(row) for row in found]

    def distinct(self, column: str, limit: int = 500) -> list[str]:
        """The values of `name` or `node` (for the filter menus), from the indexes."""
        if column not in ("name", "node"):
            raise ValueError(column)
        found = self._db().execute(
            f"SELECT DISTINCT {column} FROM tasks WHERE {column} IS NOT NULL "
            f"ORDER BY {column} LIMIT ?", (limit,))
        return [row[0] for row in found]

    def nodes(self) -> list[dict[str, Any]]:
        found = self._db().execute("SELECT name, info, last_seen, offline FROM nodes "
                                   "ORDER BY name")
        return [{"name": row["name"], "event": json.loads(row["info"]),
                 "last_seen": row["last_seen"], "offline": bool(row["offline"])}
                for row in found]

    def series(self, since: float, now: float | None = None,
               points: int = 720) -> dict[str, Any]:
        """Chart data from `since`: event counts and the largest ready count of each queue,
        per step of at least BUCKET seconds, so a chart never has more than `points` points
        whatever the window (a day of 5-second samples would be a heavy page)."""
        now = now if now is not None else time.time()
        db = self._db()
        span = max(BUCKET, now - since)
        step = max(BUCKET, int(-(-span // points) // BUCKET) * BUCKET)
        start = int(since // step) * step
        buckets = list(range(start, int(now // step) * step + 1, step))
        index = {bucket: i for i, bucket in enumerate(buckets)}
        kinds = sorted(set(COUNTED.values()))
        counts = {kind: [0] * len(buckets) for kind in kinds}
        for bucket, kind, n in db.execute(
                "SELECT (bucket / ?) * ? AS b, kind, sum(n) FROM counts WHERE bucket >= ? "
                "GROUP BY b, kind", (step, step, start)):
            if bucket in index and kind in counts:
                counts[kind][index[bucket]] = n
        samples: dict[str, dict[int, int]] = {}
        times: set[int] = set()
        for at, queue, ready in db.execute(
                "SELECT (at / ?) * ? AS t, queue, max(ready) FROM queue_samples WHERE at >= ? "
                "GROUP BY t, queue ORDER BY t", (step, step, int(since))):
            samples.setdefault(queue, {})[at] = ready
            times.add(at)
        at_list = sorted(times)
        queues = {queue: [values.get(at) for at in at_list] for queue, values in
                  sorted(samples.items())}
        return {"bucket_seconds": step, "buckets": buckets, "counts": counts,
                "queue_times": at_list, "queues": queues}
