"""fleet.paths: the one place that decides where state, pid and log files live."""

from __future__ import annotations

from pathlib import Path

from fleet import paths


def test_the_state_directory_follows_the_environment_then_the_user(monkeypatch, tmp_path):
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "explicit"))
    assert paths.state_dir() == tmp_path / "explicit"

    monkeypatch.delenv("FLEET_STATE_DIR")
    monkeypatch.setattr(paths.os, "geteuid", lambda: 0)
    assert paths.state_dir() == Path("/var/lib/fleet")

    monkeypatch.setattr(paths.os, "geteuid", lambda: 1000)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "xdg"))
    assert paths.state_dir() == tmp_path / "xdg" / "fleet"
    monkeypatch.delenv("XDG_STATE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert paths.state_dir() == tmp_path / "home" / ".local" / "state" / "fleet"


def test_the_broker_and_multis_records_live_in_the_state_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path))
    assert paths.default_broker_db() == tmp_path / "broker.db"
    assert paths.multi_state_file() == tmp_path / "multi.toml"
    assert not any(tmp_path.iterdir())  # nothing is created by asking


def test_the_root_decision_defaults_to_the_effective_uid(monkeypatch, tmp_path):
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(paths.os, "geteuid", lambda: 0)
    assert paths.default_node_files() == ("/run/fleet/%n.pid", "/var/log/fleet/%n%I.log")
    monkeypatch.setattr(paths.os, "geteuid", lambda: 1000)
    assert paths.default_node_files() == (f"{tmp_path}/run/%n.pid", f"{tmp_path}/log/%n%I.log")


def test_a_percent_in_the_state_directory_is_doubled_for_the_template(monkeypatch):
    monkeypatch.setenv("FLEET_STATE_DIR", "/srv/100%done")
    assert paths.default_node_files(is_root=False) == (
        "/srv/100%%done/run/%n.pid", "/srv/100%%done/log/%n%I.log")
