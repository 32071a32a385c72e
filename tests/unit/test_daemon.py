"""fleet.daemon: the platform's daemon primitives: pid files, log files, uid/gid and umask,
systemd's notify socket."""

from __future__ import annotations

import os
import socket
import stat

import pytest

from fleet import daemon
from fleet.daemon import (
    INHERITED_ENV,
    PidFile,
    ensure_directory,
    give_to,
    log_tail,
    open_log_file,
    parse_umask,
    pidfile_is_locked,
    read_pidfile,
    resolve_ids,
    sd_notify,
    watchdog_interval,
)
from fleet.operator_errors import (
    EXIT_CANT_CREATE,
    EXIT_CONFIG,
    ConfigError,
    FleetError,
    UsageError,
)

# -- pid files ---------------------------------------------------------------------------------


def test_a_pid_file_holds_our_pid_and_node_name_and_is_locked_while_held(tmp_path):
    pidfile = PidFile(tmp_path / "run" / "w1.pid", "w1@h")
    pidfile.acquire()
    try:
        assert (tmp_path / "run" / "w1.pid").read_text() == f"{os.getpid()}\nw1@h\n"
        assert read_pidfile(pidfile.path) == daemon.PidFileContents(os.getpid(), "w1@h")
        assert pidfile_is_locked(pidfile.path)
        assert not [p for p in (tmp_path / "run").iterdir() if p.name.endswith(".tmp")]
    finally:
        pidfile.release()
    assert not pidfile.path.exists() and not pidfile_is_locked(pidfile.path)


def test_a_pid_file_held_by_a_running_node_is_refused_and_left_alone(tmp_path):
    holder = PidFile(tmp_path / "w1.pid", "w1@h")
    holder.acquire()
    try:
        with pytest.raises(FleetError, match="held by a running node") as refused:
            PidFile(tmp_path / "w1.pid", "w1@h").acquire()
        assert refused.value.exit_code == EXIT_CANT_CREATE
        assert read_pidfile(tmp_path / "w1.pid").pid == os.getpid()
    finally:
        holder.release()


def test_a_stale_pid_file_nobody_locks_is_replaced(tmp_path):
    path = tmp_path / "w1.pid"
    path.write_text("999999\nw1@h\n")
    pidfile = PidFile(path, "w1@h")
    pidfile.acquire()
    try:
        assert read_pidfile(path).pid == os.getpid()
    finally:
        pidfile.release()


@pytest.mark.parametrize("text", ["garbage\n", "", "root:x:0:0:root:/root:/bin/bash\n"])
def test_a_file_that_is_not_a_pid_file_is_refused_and_left_alone(tmp_path, text):
    """--pidfile naming some other file (/etc/passwd) must never remove it."""
    path = tmp_path / "w1.pid"
    path.write_text(text)
    with pytest.raises(ConfigError, match="is not a pid file fleet wrote") as refused:
        PidFile(path, "w1@h").acquire()
    assert refused.value.exit_code == EXIT_CONFIG and str(path) in refused.value.one_line()
    assert path.read_text() == text


def test_a_pid_file_that_is_a_link_is_refused_and_its_target_untouched(tmp_path):
    target = tmp_path / "precious"
    target.write_text("12345\n")
    (tmp_path / "w1.pid").symlink_to(target)
    with pytest.raises(FleetError, match="is a symbolic link") as refused:
        PidFile(tmp_path / "w1.pid", "w1@h").acquire()
    assert refused.value.exit_code == EXIT_CANT_CREATE
    assert target.read_text() == "12345\n" and (tmp_path / "w1.pid").is_symlink()


def test_the_temporary_name_a_pid_file_is_written_under_cannot_be_planted(tmp_path):
    """It used to be `.NAME.PID.tmp`, opened with O_TRUNC through links."""
    target = tmp_path / "precious"
    target.write_text("keep\n")
    (tmp_path / f".w1.pid.{os.getpid()}.tmp").symlink_to(target)
    pidfile = PidFile(tmp_path / "w1.pid", "w1@h")
    pidfile.acquire()
    try:
        assert target.read_text() == "keep\n"
        assert read_pidfile(tmp_path / "w1.pid").pid == os.getpid()
    finally:
        pidfile.release()


def test_a_pid_file_is_only_removed_while_it_still_holds_our_pid(tmp_path):
    pidfile = PidFile(tmp_path / "w1.pid")
    pidfile.acquire()
    pidfile.path.unlink()
    pidfile.path.write_text("12345\n")  # someone else's now
    pidfile.release()
    assert pidfile.path.read_text() == "12345\n"


def test_a_restart_in_place_keeps_the_pid_file_and_its_lock(tmp_path, monkeypatch):
    monkeypatch.delenv(INHERITED_ENV, raising=False)
    first = PidFile(tmp_path / "w1.pid", "w1@h")
    first.acquire()
    first.keep_across_exec()  # what the node does just before exec
    assert os.environ[INHERITED_ENV].endswith(f":{first.path}")
    assert pidfile_is_locked(first.path)
    again = PidFile(tmp_path / "w1.pid", "w1@h")  # the new program image
    again.acquire()
    try:
        assert INHERITED_ENV not in os.environ and pidfile_is_locked(again.path)
    finally:
        again.release()
    assert not again.path.exists()


@pytest.mark.parametrize("text", ["", "x\n", "-1\n", " \n12\n", "0\n", "\u00b2\n",
                                  "99999999999999999999\n", "\u0663\n"])
def test_read_pidfile_refuses_garbage(tmp_path, text):
    (tmp_path / "w1.pid").write_text(text)
    assert read_pidfile(tmp_path / "w1.pid") is None


def test_read_pidfile_of_a_missing_file_or_a_directory_is_none(tmp_path):
    assert read_pidfile(tmp_path / "missing.pid") is None
    assert read_pidfile(tmp_path) is None
    assert not pidfile_is_locked(tmp_path / "missing.pid")


# -- log files and directories -----------------------------------------------------------------


def test_a_log_file_is_created_with_its_directories_and_appended_to(tmp_path):
    path = tmp_path / "log" / "deep" / "w1.log"
    path.parent.parent.mkdir()
    for line in (b"one\n", b"two\n"):
        fd = open_log_file(path)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
    assert path.read_bytes() == b"one\ntwo\n"
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 & ~_umask()


def test_ensure_directory_creates_missing_parents_and_keeps_existing_ones(tmp_path):
    assert ensure_directory(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert ensure_directory(tmp_path / "a" / "b").is_dir()


def test_log_tail_gives_the_last_non_empty_lines(tmp_path):
    log = tmp_path / "w1.log"
    log.write_text("".join(f"line {n}\n\n" for n in range(30)))
    assert log_tail(log, 3) == ["line 27", "line 28", "line 29"]
    assert log_tail(tmp_path / "missing.log") == []


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


# -- whose the process is: uid, gid, umask -----------------------------------------------------


def test_umask_and_user_checks():
    assert parse_umask(None) == 0o022 and parse_umask("027") == 0o027
    with pytest.raises(UsageError):
        parse_umask("999")
    with pytest.raises(UsageError, match="no such user"):
        resolve_ids("no-such-user-here", None)
    with pytest.raises(UsageError, match="no such group"):
        resolve_ids(None, "no-such-group-here")
    assert resolve_ids(str(os.getuid()), None)[0] == os.getuid()


@pytest.mark.parametrize("text", ["8", "abc", "-1", "1000", ""])
def test_a_umask_must_be_an_octal_mode(text):
    with pytest.raises(UsageError, match=f"--umask {text}: not an octal mode"):
        parse_umask(text)


def test_a_user_brings_its_primary_group_and_a_group_overrides_it():
    import grp
    import pwd

    me = pwd.getpwuid(os.getuid())
    assert resolve_ids(me.pw_name, None) == (me.pw_uid, me.pw_gid)
    group = grp.getgrgid(os.getgid())
    assert resolve_ids(None, group.gr_name) == (None, group.gr_gid)
    assert resolve_ids(None, None) == (None, None)


def test_give_to_nobody_changes_nothing(tmp_path):
    path = tmp_path / "f"
    path.write_text("")
    before = path.stat()
    fd = os.open(path, os.O_RDONLY)
    try:
        give_to(fd, None, None)
    finally:
        os.close(fd)
    assert (path.stat().st_uid, path.stat().st_gid) == (before.st_uid, before.st_gid)


def test_a_log_file_that_is_a_link_is_refused_and_its_tail_never_printed(tmp_path):
    secret = tmp_path / "shadow"
    secret.write_text("root:$6$secret:19000::::::\n")
    (tmp_path / "w1.log").symlink_to(secret)
    with pytest.raises(FleetError, match="symbolic link"):
        open_log_file(tmp_path / "w1.log")
    assert log_tail(tmp_path / "w1.log") == []
    assert secret.read_text() == "root:$6$secret:19000::::::\n"


# -- systemd ------------------------------------------------------------------------------------


def test_sd_notify_without_systemd_does_nothing(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify("READY=1") is False


def test_sd_notify_sends_the_state_to_the_notify_socket(tmp_path, monkeypatch):
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(address)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        assert sd_notify("READY=1") is True
        receiver.settimeout(5)
        assert receiver.recv(100) == b"READY=1"


def test_the_watchdog_interval_is_half_of_systemds_and_only_for_us(monkeypatch):
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "3000000")
    assert watchdog_interval() == 1.5
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval() is None
