"""Wake-ups for the SQLite broker between subscribers and writers (one process here; the
cross-process case is in tests/integration/test_sqlite_transport.py)."""

from __future__ import annotations

import select

from fleet.engine.transport.sqlite_wake import WakeSender, WakeSocket, wake_dir


def readable(sock: WakeSocket, timeout: float = 2.0) -> bool:
    return bool(select.select([sock.fileno()], [], [], timeout)[0])


def test_a_put_wakes_the_subscribers_of_that_queue_only(tmp_path):
    db = tmp_path / "b.db"
    mine = WakeSocket.open(db, ["q"], [])
    other = WakeSocket.open(db, ["r"], ["control"])
    sender = WakeSender(db)
    try:
        sender.wake("q", ["q", "q", "unknown"])

        assert readable(mine) and mine.drain() == {b"q"}
        assert not readable(other, 0.05)
        sender.wake("c", ["control"])
        assert readable(other) and other.drain() == {b"c"}
        assert mine.drain() == set()
    finally:
        for sock in (mine, other):
            sock.close()
        sender.close()


def test_the_directory_follows_symlinks_so_every_process_agrees(tmp_path):
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")

    assert wake_dir(tmp_path / "link" / "b.db") == tmp_path / "real" / "b.db.wake"


def test_nothing_to_listen_to_makes_no_socket(tmp_path):
    assert WakeSocket.open(tmp_path / "b.db", [], []) is None


def test_markers_of_a_closed_subscriber_are_gone_and_a_dead_one_is_pruned(tmp_path):
    db = tmp_path / "b.db"
    closed = WakeSocket.open(db, ["q"], [])
    closed.close()
    assert list(wake_dir(db).glob("*/*")) == []

    dead = WakeSocket.open(db, ["q"], [])
    dead.sock.close()  # its process died without closing
    WakeSender(db).wake("q", ["q"])

    assert list(wake_dir(db).glob("*/*")) == []
