"""contrib/systemd: every unit passes `systemd-analyze verify` (strictly: any diagnostic
fails the test), and the tmpfiles entries create the directories with their modes."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

CONTRIB = ROOT / "contrib" / "systemd"
UNITS = sorted(path.name for path in CONTRIB.glob("*.service")) + \
    sorted(path.name for path in CONTRIB.glob("*.timer"))


def require(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{tool} is missing: .ci/run installs it (apt-get install systemd)")
        pytest.skip(f"{tool} is not installed")
    return found


def installed_copy(name: str, directory: Path) -> Path:
    """The unit as an admin would install it, with the fleet executable where it is here."""
    text = (CONTRIB / name).read_text()
    text = text.replace("/opt/fleet/venv/bin/fleet", str(Path(sys.executable).parent / "fleet"))
    target = directory / (name.replace("@.", "@w1.") if "@." in name else name)
    target.write_text(text)
    return target


@pytest.mark.parametrize("name", UNITS)
def test_unit_passes_systemd_analyze_verify(name, tmp_path):
    analyze = require("systemd-analyze")
    unit = installed_copy(name, tmp_path)
    done = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True,
                          text=True, timeout=60, check=False)
    diagnostics = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
    assert done.returncode == 0 and diagnostics == [], "\n".join(diagnostics)


def test_the_verify_check_catches_a_broken_unit(tmp_path):
    analyze = require("systemd-analyze")
    unit = installed_copy("fleet-worker@.service", tmp_path)
    unit.write_text(unit.read_text().replace("KillMode=mixed", "KillMode=sideways"))
    done = subprocess.run([analyze, "verify", "--man=no", str(unit)], capture_output=True,
                          text=True, timeout=60, check=False)
    assert "kill mode" in done.stderr  # so the strict check above would fail on it


def test_worker_unit_is_notify_mixed_and_reloads_with_hup():
    text = (CONTRIB / "fleet-worker@.service").read_text()
    for line in ("Type=notify", "KillMode=mixed", "ExecReload=/bin/kill -HUP $MAINPID",
                 "RestartPreventExitStatus=4 73 78"):
        assert line in text


def test_tmpfiles_create_the_directories(tmp_path):
    tmpfiles = require("systemd-tmpfiles")
    config = tmp_path / "fleet.conf"
    config.write_text((CONTRIB / "fleet.tmpfiles").read_text().replace("fleet fleet", "root root"))
    root = tmp_path / "root"
    root.mkdir()
    done = subprocess.run([tmpfiles, "--create", f"--root={root}", str(config)],
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    modes = {path: oct((root / path).stat().st_mode & 0o777)
             for path in ("var/log/fleet", "var/lib/fleet")}
    assert modes == {"var/log/fleet": "0o755", "var/lib/fleet": "0o750"}


def test_tmpfiles_give_the_fleet_user_no_directory_root_writes_into():
    """/var/log/fleet is where supervisord (root) writes the programs' logs: owned by the
    fleet user, it let that user plant links root would write through. Only the units'
    state directory, which root never writes into, is the fleet user's."""
    entries = {fields[1]: fields for line in (CONTRIB / "fleet.tmpfiles").read_text().splitlines()
               if (fields := line.split()) and not line.startswith("#")}
    assert entries["/var/log/fleet"][2:5] == ["0755", "root", "root"]
    assert entries["/var/lib/fleet"][2:5] == ["0750", "fleet", "fleet"]
    assert set(entries) == {"/var/log/fleet", "/var/lib/fleet"}
    supervisor = (CONTRIB.parent / "supervisor" / "fleet.conf").read_text()
    assert "stdout_logfile=/var/log/fleet/" in supervisor  # root's directory, root writes it


def test_fleet_unit_runs_multi_start_stopwait_and_rolling_restart():
    text = (CONTRIB / "fleet.service").read_text()
    settings = dict(line.split("=", 1) for line in text.splitlines()
                    if "=" in line and not line.startswith("#"))
    assert settings["Type"] == "oneshot" and settings["RemainAfterExit"] == "yes"
    assert settings["ExecStart"].endswith("fleet multi start")
    assert settings["ExecReload"].split()[1:4] == ["multi", "restart", "--rolling"]
    stop = settings["ExecStop"].split()
    assert stop[1:3] == ["multi", "stopwait"]
    stopwait_timeout = float(next(arg for arg in stop if arg.startswith("--timeout="))[10:])
    assert float(settings["TimeoutStopSec"]) > stopwait_timeout  # stopwait escalates first
