"""The SQLite broker's file, schema and connections (a file in a temporary directory)."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from fleet.engine.transport import open_transport
from fleet.engine.transport.sqlite_store import SCHEMA_VERSION, path_from_url
from fleet.operator_errors import ConfigError


@pytest.mark.parametrize(("url", "path"), [
    ("sqlite:///srv/fleet/broker.db", Path("/srv/fleet/broker.db")),
    ("sqlite:///srv/fleet/broker.db?mode=rw", Path("/srv/fleet/broker.db")),
    ("sqlite://relative.db", Path("relative.db").absolute()),
    ("sqlite://~/fleet.db", Path("~/fleet.db").expanduser()),
])
def test_path_from_url(url, path):
    assert path_from_url(url) == path


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///", "sqlite://?x=1"])
def test_a_url_without_a_file_says_how_to_write_one(url):
    with pytest.raises(ConfigError, match="three slashes"):
        path_from_url(url)


def test_opening_creates_every_table_in_wal_mode_with_the_schema_version(tmp_path):
    path = tmp_path / "b.db"
    open_transport(f"sqlite:///{path}").ping()

    conn = sqlite3.connect(path)
    tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"meta", "messages", "scheduled", "queues", "consumers", "kv", "dead_letters",
            "broadcasts"} <= tables
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("SELECT value FROM meta").fetchone()[0] == str(SCHEMA_VERSION)


def test_the_busy_timeout_is_at_least_ten_seconds(tmp_path):
    url = f"sqlite:///{tmp_path / 'b.db'}"

    assert open_transport(url, {"connect_timeout": 2}).busy_timeout == 10.0
    assert open_transport(url, {"connect_timeout": 30}).busy_timeout == 30.0


def test_each_thread_gets_its_own_connection(tmp_path):
    transport = open_transport(f"sqlite:///{tmp_path / 'b.db'}")
    seen = []
    thread = threading.Thread(target=lambda: seen.append(transport.conn))
    thread.start()
    thread.join()

    assert seen[0] is not transport.conn
    assert transport.conn is transport.conn


def test_a_failed_write_rolls_back(tmp_path):
    transport = open_transport(f"sqlite:///{tmp_path / 'b.db'}")

    with pytest.raises(RuntimeError), transport._write() as conn:
        conn.execute("INSERT INTO queues VALUES ('q')")
        raise RuntimeError("half way")

    assert transport.conn.execute("SELECT COUNT(*) FROM queues").fetchone()[0] == 0
    assert not transport.conn.in_transaction
