"""Rows of the SQLite broker that fleet did not write: found, checked, and set aside.

SQLite does not enforce column types, so whatever can write the file can leave a row fleet
cannot use: a priority 'high', a body that is a number or not UTF-8, an eta 'abc'. None of
them may fail a whole call, stop a node, or sit unseen forever:

* `reserve` takes them like any other row (an eta that is not a number counts as due: see
  `ETA_DUE`; text sorts above numbers, so a text priority comes first), checks each row
  (`problem`) and moves the bad ones to the dead letters with the reason (`set_aside`), in
  the same transaction, so each costs only itself;
* text that is not valid UTF-8 makes Python's sqlite3 refuse the whole query: the rows are
  then read again as bytes (`select_ready`) and the undecodable ones set aside;
* a consumer whose heartbeat is not a number counts as dead (`HEARTBEAT_DEAD`), so what it
  holds is recovered.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Sequence
from typing import Any

logger = logging.getLogger("fleet.engine.transport.sqlite")

#: Rows due by the query's `?`, or whose eta is not a number (text and blobs sort after
#: every number in SQLite, so `>= ''` finds exactly them).
ETA_DUE = "(eta IS NULL OR eta <= ? OR eta >= '')"
#: Consumers silent since the query's `?`, or whose heartbeat is not a number.
HEARTBEAT_DEAD = "(heartbeat < ? OR heartbeat >= '')"

_COLUMNS = "seq, {id}, {queue}, priority, {body}, redelivered, eta"
_READY = ("SELECT " + _COLUMNS + " FROM messages WHERE owner IS NULL AND queue = ? AND "
          f"{ETA_DUE} ORDER BY priority DESC, seq LIMIT ?")
_PLAIN = _READY.format(id="id", queue="queue", body="body")


def raw(column: str) -> str:
    """A column read as bytes when it holds text (so text that is not UTF-8 can be read)."""
    return f"CASE typeof({column}) WHEN 'text' THEN CAST({column} AS BLOB) ELSE {column} END"


_RAW = _READY.format(id=raw("id"), queue=raw("queue"), body=raw("body"))


def select_ready(conn: sqlite3.Connection, queue: str, due_by: float, limit: int
                 ) -> list[tuple[Any, ...]]:
    """The best `limit` unreserved rows of `queue` due by `due_by`, as (seq, id, queue,
    priority, body, redelivered, eta); undecodable text comes back as bytes."""
    try:
        return conn.execute(_PLAIN, (queue, due_by, limit)).fetchall()
    except sqlite3.OperationalError as exc:
        if "decode" not in str(exc).lower():
            raise
    return [(seq, _decoded(id_), _decoded(name), priority, _decoded(body), redelivered, eta)
            for seq, id_, name, priority, body, redelivered, eta in
            conn.execute(_RAW, (queue, due_by, limit)).fetchall()]


def _decoded(value: Any) -> Any:
    if isinstance(value, bytes):
        try:
            return value.decode()
        except UnicodeDecodeError:
            return value
    return value


def problem(row: Sequence[Any]) -> str | None:
    """Why a message row (as `select_ready` returns it) cannot be delivered, or None."""
    _, id_, queue, priority, body, _, eta = row
    for name, value in (("id", id_), ("queue", queue), ("body", body)):
        if not isinstance(value, str) or (name != "body" and not value):
            return f"its {name} is {_shown(value)}, not a non-empty valid UTF-8 text"
    if not isinstance(priority, int):
        return f"its priority is {_shown(priority)}, not a whole number"
    if eta is not None and not isinstance(eta, int | float):
        return f"its eta is {_shown(eta)}, not a number"
    return None


def _shown(value: Any) -> str:
    kind = {bytes: "bytes", str: "text", int: "a number", float: "a number"}.get(
        type(value), type(value).__name__)
    text = repr(value)
    return f"{kind} {text[:60]}{'...' if len(text) > 60 else ''}"


def text_of(value: Any) -> str:
    """Any column value as text, for a dead letter (bytes that are not UTF-8 escaped)."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return value if isinstance(value, str) else str(value)


def set_aside(conn: sqlite3.Connection, bad: list[tuple[Sequence[Any], str]], now: float,
              keep: int) -> None:
    """Move message rows fleet cannot use to the dead letters, each with its reason."""
    for row, reason in bad:
        seq, id_, queue, _, body = row[:5]
        why = f"a row of the messages table that fleet cannot use: {reason}"
        logger.warning("SQLite broker: message row %s (id %.100r) moved to the dead letters: %s",
                       seq, id_, reason)
        conn.execute("INSERT INTO dead_letters (id, queue, body, reason, at) VALUES (?,?,?,?,?)",
                     (text_of(id_), text_of(queue), text_of(body), why, now))
        conn.execute("DELETE FROM messages WHERE seq = ?", (seq,))
    conn.execute("DELETE FROM dead_letters WHERE seq <= (SELECT MAX(seq) FROM dead_letters) - ?",
                 (keep,))
