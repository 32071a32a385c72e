"""SQLite-specific behaviour: schema versions, files and permissions, many processes."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys

import pytest

from fleet.engine.transport import open_transport
from fleet.engine.transport.sqlite import SCHEMA_VERSION
from fleet.exceptions import BrokerUnavailable
from fleet.operator_errors import PermissionProblem


def test_a_version_1_database_is_migrated_in_place(tmp_path):
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    conn.executescript("""
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        INSERT INTO meta VALUES ('schema_version', '1');
        CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
            queue TEXT NOT NULL, priority INTEGER NOT NULL DEFAULT 0, body TEXT NOT NULL,
            owner TEXT, started INTEGER NOT NULL DEFAULT 0,
            redelivered INTEGER NOT NULL DEFAULT 0);
        INSERT INTO messages (id, queue, body) VALUES ('kept', 'q', '{}');
    """)
    conn.commit()
    conn.close()
    transport = open_transport(f"sqlite:///{path}")
    [stats] = [s for s in transport.queue_stats() if s.name == "q"]
    assert stats.ready == 1  # the old message survived and is readable
    assert [d.id for d in transport.reserve("c#1", ["q"], 5)] == ["kept"]
    version = sqlite3.connect(path).execute(
        "SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    assert int(version) == SCHEMA_VERSION


def test_a_database_from_a_newer_fleet_is_refused(tmp_path):
    path = tmp_path / "new.db"
    open_transport(f"sqlite:///{path}").ping()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE meta SET value = '999' WHERE key = 'schema_version'")
    conn.commit()
    conn.close()
    with pytest.raises(BrokerUnavailable, match="created by a newer fleet"):
        open_transport(f"sqlite:///{path}").ping()


def test_the_database_file_is_private_and_its_directory_created(tmp_path):
    path = tmp_path / "deep" / "er" / "broker.db"
    open_transport(f"sqlite:///{path}").ping()
    assert path.exists()
    assert oct(path.stat().st_mode & 0o777) == oct(0o600)


@pytest.mark.skipif(os.geteuid() == 0, reason="root can write anywhere")
def test_an_unwritable_directory_names_the_path_and_the_fix(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    with pytest.raises(PermissionProblem, match=str(locked)):
        open_transport(f"sqlite:///{locked / 'sub' / 'broker.db'}").ping()


def test_many_processes_put_at_once_without_database_is_locked(tmp_path):
    url = f"sqlite:///{tmp_path / 'busy.db'}"
    open_transport(url).ping()
    script = (
        "import sys; from fleet.engine.transport import open_transport\n"
        "from fleet.engine.transport.base import Outgoing\n"
        "t = open_transport(sys.argv[1])\n"
        "for i in range(200):\n"
        "    t.put([Outgoing(f'{sys.argv[2]}-{i}', 'q', '{}')])\n"
        "    t.reserve(sys.argv[2], ['q'], 1)\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, url, f"p{n}"],
                              stderr=subprocess.PIPE, text=True) for n in range(6)]
    errors = [proc.communicate(timeout=60)[1] for proc in procs]
    assert [proc.returncode for proc in procs] == [0] * 6, errors
    stats = {s.name: s for s in open_transport(url).queue_stats()}["q"]
    assert stats.ready + stats.reserved == 1200


def test_unusable_url_is_a_config_error():
    from fleet.operator_errors import ConfigError

    with pytest.raises(ConfigError, match="names no file"):
        open_transport("sqlite://")


def test_a_put_wakes_a_subscriber_of_another_process_through_its_socket(tmp_path):
    """The wake-up socket works across processes: a put from a separate interpreter makes
    the subscription's descriptor readable at once (no poll interval to wait for)."""
    import select

    url = f"sqlite:///{tmp_path / 'broker.db'}"
    transport = open_transport(url)
    subscription = transport.subscribe(["control"], wake_queues=["q"])
    try:
        assert subscription.fileno() is not None
        subscription.poll()
        code = ("from fleet.engine.transport import open_transport\n"
                "from fleet.engine.transport.base import Outgoing\n"
                f"open_transport({url!r}).put([Outgoing('m1', 'q', '{{}}')])\n")
        subprocess.run([sys.executable, "-c", code], check=True, timeout=30)
        assert select.select([subscription.fileno()], [], [], 5)[0]
        assert subscription.poll() == ([], True)
    finally:
        subscription.close()
        transport.close()


def test_the_marker_of_a_vanished_subscriber_is_removed_by_the_next_put(tmp_path):
    from fleet.engine.transport.base import Outgoing
    from fleet.engine.transport.sqlite_wake import wake_dir

    transport = open_transport(f"sqlite:///{tmp_path / 'broker.db'}")
    subscription = transport.subscribe([], wake_queues=["q"])
    markers = list(wake_dir(tmp_path / "broker.db").glob("q-*/*"))
    assert len(markers) == 1
    subscription._wake.sock.close()  # as if its process had been SIGKILLed

    transport.put([Outgoing("m1", "q", "{}")])

    assert not markers[0].exists()
    transport.close()


def test_closing_a_subscription_removes_its_markers(tmp_path):
    from fleet.engine.transport.sqlite_wake import wake_dir

    transport = open_transport(f"sqlite:///{tmp_path / 'broker.db'}")
    subscription = transport.subscribe(["control"], wake_queues=["q", "r"])
    root = wake_dir(tmp_path / "broker.db")
    assert len(list(root.glob("*/*"))) == 3

    subscription.close()

    assert list(root.glob("*/*")) == []
    transport.close()
