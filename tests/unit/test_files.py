"""fleet.files: nothing is opened through a link, temporary names are unpredictable and
exclusive, and root refuses directories another user can write (run as root in CI)."""

from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from fleet.files import (
    check_directory,
    make_directory,
    open_regular,
    read_bytes,
    temporary_name,
    write_atomically,
)
from fleet.operator_errors import EXIT_CANT_CREATE, EXIT_PERMISSION, FleetError

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")


def test_a_link_is_never_opened_and_its_target_is_untouched(tmp_path):
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    link = tmp_path / "w1.log"
    link.symlink_to(target)
    with pytest.raises(FleetError, match="is a symbolic link") as refused:
        open_regular(link, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o640, "log file")
    assert refused.value.exit_code == EXIT_CANT_CREATE
    assert str(link) in refused.value.one_line() and "rm " in refused.value.one_line()
    with pytest.raises(FleetError, match="symbolic link"):
        read_bytes(link)
    assert target.read_text() == "keep me\n"


def test_a_fifo_planted_as_a_file_is_refused_at_once_instead_of_hanging(tmp_path):
    fifo = tmp_path / "w1.log"
    os.mkfifo(fifo)
    done = threading.Event()

    def attempt() -> None:
        for flags in (os.O_RDONLY, os.O_WRONLY | os.O_APPEND):
            with pytest.raises(FleetError, match="not a regular file"):
                open_regular(fifo, flags)
        done.set()

    worker = threading.Thread(target=attempt, daemon=True)
    worker.start()
    assert done.wait(5), "opening a FIFO blocked"


def test_writing_atomically_replaces_the_file_owner_only_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "multi.toml"
    path.write_text("old")
    write_atomically(path, b"new", 0o600)
    assert path.read_bytes() == b"new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["multi.toml"]


def test_temporary_names_are_hidden_and_unpredictable(tmp_path):
    names = {temporary_name(tmp_path / "w1.pid").name for _ in range(50)}
    assert len(names) == 50
    assert all(name.startswith(".w1.pid.") and name.endswith(".tmp") for name in names)
    assert all(len(name.split(".")[3]) == 16 for name in names)  # 64 random bits, no pid


def test_make_directory_creates_the_missing_parents_and_says_which(tmp_path):
    made = make_directory(tmp_path / "a" / "b" / "c")
    assert made == [tmp_path / "a", tmp_path / "a" / "b", tmp_path / "a" / "b" / "c"]
    assert make_directory(tmp_path / "a" / "b") == []


# -- as root -----------------------------------------------------------------------------------


def _owned_by(path: Path, uid: int, mode: int) -> Path:
    path.mkdir(exist_ok=True)
    os.chown(path, uid, -1)
    path.chmod(mode)
    return path


@needs_root
@pytest.mark.parametrize(("owner", "mode", "who"), [
    ("user", 0o755, "user "), ("root", 0o777, "every user"), ("root", 0o775, "group "),
    ("root", 0o1777, "every user"),
])
def test_root_refuses_to_write_into_a_directory_another_user_can_write(
        tmp_path, system_user, owner, mode, who):
    directory = tmp_path / "logs"
    directory.mkdir()
    os.chown(directory, system_user.uid if owner == "user" else 0, system_user.gid)
    directory.chmod(mode)
    with pytest.raises(FleetError) as refused:
        open_regular(directory / "w1.log", os.O_WRONLY | os.O_CREAT, 0o640, "log file")
    line = refused.value.one_line()
    assert refused.value.exit_code == EXIT_PERMISSION
    assert f"refusing to write log file {directory / 'w1.log'} as root" in line
    assert who in line and "chmod go-w" in line
    assert not (directory / "w1.log").exists()


@needs_root
def test_root_refuses_a_directory_whose_parent_belongs_to_another_user(tmp_path, system_user):
    home = _owned_by(tmp_path / "home", system_user.uid, 0o755)
    inner = home / "logs"
    inner.mkdir()  # root's, but its parent's owner can rename it away and put a link there
    with pytest.raises(FleetError, match=f"{home} can be written by user {system_user.name}"):
        check_directory(inner, "log file")


@needs_root
def test_root_writes_where_only_root_can_and_a_new_directory_is_handed_over_by_descriptor(
        tmp_path, system_user):
    check_directory(tmp_path, "log file")  # 0700 root's: fine
    made = make_directory(tmp_path / "run" / "fleet", owner=(system_user.uid, system_user.gid))
    assert made == [tmp_path / "run", tmp_path / "run" / "fleet"]
    info = (tmp_path / "run" / "fleet").stat()
    assert (info.st_uid, info.st_gid) == (system_user.uid, system_user.gid)
    assert (tmp_path / "run").stat().st_uid == 0  # its parents stay root's


def test_an_existing_file_is_looked_at_without_being_opened(tmp_path):
    from fleet.files import existing_regular

    assert existing_regular(tmp_path / "missing.db") is False
    (tmp_path / "broker.db").write_text("")
    assert existing_regular(tmp_path / "broker.db") is True
    (tmp_path / "link.db").symlink_to(tmp_path / "broker.db")
    with pytest.raises(FleetError, match="symbolic link"):
        existing_regular(tmp_path / "link.db")
    with pytest.raises(FleetError, match="not a regular file"):
        existing_regular(tmp_path)


def test_the_sqlite_broker_refuses_a_link_and_creates_its_file_for_its_owner_only(tmp_path):
    from fleet.engine.transport.sqlite import SQLiteTransport

    target = tmp_path / "precious"
    target.write_text("keep\n")
    (tmp_path / "broker.db").symlink_to(target)
    with pytest.raises(FleetError, match="symbolic link"):
        SQLiteTransport(f"sqlite:///{tmp_path}/broker.db").new_connection()
    assert target.read_text() == "keep\n"
    transport = SQLiteTransport(f"sqlite:///{tmp_path}/new/broker.db")
    transport.new_connection().close()
    assert stat.S_IMODE((tmp_path / "new" / "broker.db").stat().st_mode) == 0o600
