"""Dropping privileges for --uid/--gid, for real, as root (CI runs as root): each check runs
the code in a forked child of the test, which becomes the test's own unprivileged user and
reports what the kernel says (getresuid, getresgid, getgroups) through a pipe.

A node run for real as that user: tests/integration/test_privileges.py."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from fleet import daemon, paths
from fleet.daemon import acting_as, drop_privileges
from fleet.operator_errors import EXIT_CANT_CREATE, FleetError
from fleet.worker_setup.detach import DetachOptions, prepare_node_files

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")


def in_child(function: Callable[[], Any]) -> Any:
    """Run `function` in a forked child; its JSON result, or the error it raised."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read_fd)
            try:
                answer = {"value": function()}
            except BaseException as exc:
                answer = {"error": f"{type(exc).__name__}: {exc}",
                          "code": getattr(exc, "exit_code", None)}
            os.write(write_fd, json.dumps(answer).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    data = b""
    while chunk := os.read(read_fd, 65536):
        data += chunk
    os.close(read_fd)
    os.waitpid(pid, 0)
    return json.loads(data)


def identity() -> dict[str, Any]:
    return {"uids": list(os.getresuid()), "gids": list(os.getresgid()),
            "groups": sorted(os.getgroups()), "home": os.environ.get("HOME")}


def test_a_user_gets_exactly_its_own_groups_and_cannot_become_root_again(system_user):
    def drop() -> dict[str, Any]:
        os.setgroups([0, 4242, 4243])  # the launcher's supplementary groups
        drop_privileges(system_user.uid, None)
        found = identity()
        try:
            os.setuid(0)
            found["regained"] = True
        except PermissionError:
            found["regained"] = False
        return found

    found = in_child(drop)["value"]
    assert found["uids"] == [system_user.uid] * 3
    assert found["gids"] == [system_user.gid] * 3
    assert found["groups"] == sorted({system_user.gid, system_user.extra_gid})  # initgroups
    assert found["regained"] is False and found["home"] == "/nonexistent"


def test_a_gid_equal_to_the_launchers_still_resets_its_supplementary_groups(system_user):
    """--gid 0 (root's own) used to skip setgroups and keep every group root had."""
    def drop(uid: int | None) -> Callable[[], dict[str, Any]]:
        def run() -> dict[str, Any]:
            os.setgroups([0, 4242, 4243])
            drop_privileges(uid, os.getgid())
            return identity()
        return run

    group_only = in_child(drop(None))["value"]
    assert group_only["groups"] == [0] and group_only["gids"] == [0, 0, 0]
    with_user = in_child(drop(system_user.uid))["value"]
    assert with_user["groups"] == sorted({0, system_user.extra_gid})
    assert 4242 not in with_user["groups"] and with_user["uids"] == [system_user.uid] * 3


def test_the_state_directory_is_resolved_before_the_drop_and_handed_on(tmp_path, system_user,
                                                                       monkeypatch):
    """After setuid the node used to follow the user's HOME: another embedded broker."""
    monkeypatch.delenv("FLEET_STATE_DIR", raising=False)
    monkeypatch.setattr(paths, "ROOT_STATE_DIR", tmp_path / "state")

    def drop() -> list[str]:
        before = paths.hand_on_state_dir()
        drop_privileges(system_user.uid, None)
        return [str(before), str(paths.state_dir()), str(paths.default_broker_db())]

    before, after, broker = in_child(drop)["value"]
    assert before == after == str(tmp_path / "state")
    assert broker == str(tmp_path / "state" / "broker.db")


def test_acting_as_a_user_makes_its_files_and_gives_root_back(open_tmp, system_user):
    tmp_path = open_tmp
    home = tmp_path / "home"
    home.mkdir()
    os.chown(home, system_user.uid, system_user.gid)

    def act() -> dict[str, Any]:
        before = identity()
        with acting_as(system_user.uid, None):
            during = identity()
            fd = os.open(home / "made", os.O_WRONLY | os.O_CREAT, 0o600)
            os.close(fd)
        return {"before": before, "during": during, "after": identity()}

    found = in_child(act)["value"]
    assert found["during"]["uids"][1] == system_user.uid
    assert found["during"]["groups"] == sorted({system_user.gid, system_user.extra_gid})
    assert found["after"] == found["before"]
    made = (home / "made").stat()
    assert (made.st_uid, made.st_gid) == (system_user.uid, system_user.gid)


def test_a_link_the_node_user_planted_in_its_log_directory_is_neither_followed_nor_chowned(
        open_tmp, system_user):
    """The issue's reproduction: root running `fleet worker --detach --uid USER --logfile
    logs/%n%I.log` chowned the target of the user's link to the user."""
    tmp_path = open_tmp
    logs = tmp_path / "logs"
    logs.mkdir()
    os.chown(logs, system_user.uid, system_user.gid)
    precious = tmp_path / "root-owned"
    precious.write_text("root's\n")
    (logs / "w1.log").symlink_to(precious)
    os.lchown(logs / "w1.log", system_user.uid, system_user.gid)
    options = DetachOptions(logs / "w1.log", uid=system_user.name, nodename="w1@h",
                            directories=[logs])

    def prepare() -> int:
        uid, gid = daemon.resolve_ids(options.uid, options.gid)
        return prepare_node_files(options, uid, gid)

    answer = in_child(prepare)
    assert answer["code"] == EXIT_CANT_CREATE and "symbolic link" in answer["error"]
    info = precious.stat()
    assert (info.st_uid, info.st_gid) == (0, 0) and precious.read_text() == "root's\n"


def test_a_node_directory_root_creates_is_handed_to_the_user_and_the_log_made_by_it(
        open_tmp, system_user):
    tmp_path = open_tmp
    options = DetachOptions(tmp_path / "logs" / "w1.log", uid=system_user.name,
                            nodename="w1@h", directories=[tmp_path / "logs"])

    def prepare() -> str:
        uid, gid = daemon.resolve_ids(options.uid, options.gid)
        os.close(prepare_node_files(options, uid, gid))
        return os.environ["FLEET_STATE_DIR"]

    assert "value" in in_child(prepare)
    for path in (tmp_path / "logs", tmp_path / "logs" / "w1.log"):
        info = path.stat()
        assert (info.st_uid, info.st_gid) == (system_user.uid, system_user.gid)


def test_root_without_uid_refuses_a_log_directory_the_user_owns(tmp_path, system_user):
    logs = tmp_path / "logs"
    logs.mkdir()
    os.chown(logs, system_user.uid, system_user.gid)
    with pytest.raises(FleetError, match=f"can be written by user {system_user.name}"):
        prepare_node_files(DetachOptions(logs / "w1.log", directories=[logs]), None, None)
    assert not (logs / "w1.log").exists()


def test_files_are_unchanged_when_not_root_is_simulated_by_nothing(tmp_path):
    """acting_as without a uid changes nothing (a --gid alone keeps root's uid)."""
    with acting_as(None, 0):
        assert os.geteuid() == 0
    assert Path(tmp_path).exists()
