"""contrib/systemd/fleet-dashboard.service: its command line, run for real with the
credential systemd would hand it and a real NOTIFY_SOCKET, serves, says READY=1, and stops
on TERM with STOPPING=1 and exit 0. (`systemd-analyze verify` checks the unit itself in
test_systemd_units.py, like every shipped unit.)"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.support import APPS, ROOT, fleet_env, wait_for

UNIT = ROOT / "contrib" / "systemd" / "fleet-dashboard.service"


def unit_settings() -> dict[str, str]:
    return dict(line.split("=", 1) for line in UNIT.read_text().splitlines()
                if "=" in line and not line.startswith("#"))


def test_the_unit_listens_on_loopback_with_logins_from_a_credential():
    settings = unit_settings()
    assert settings["Type"] == "notify" and settings["KillSignal"] == "SIGTERM"
    assert settings["LoadCredential"] == "dashboard.auth:/etc/fleet/dashboard.auth"
    command = shlex.split(settings["ExecStart"])
    assert command[1] == "dashboard"
    assert command[command.index("--address") + 1] == "127.0.0.1"
    assert command[command.index("--auth-file") + 1] == \
        "${CREDENTIALS_DIRECTORY}/dashboard.auth"
    assert "--auth" not in command  # never a password on the command line
    assert settings["RestartPreventExitStatus"].split() == ["2", "4", "78"]


def test_the_units_command_serves_notifies_and_stops_on_term(tmp_path):
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "dashboard.auth").write_text("admin:s3cret\n")
    command = shlex.split(unit_settings()["ExecStart"])
    command = [sys.executable, "-m", "fleet",
               *[arg.replace("${CREDENTIALS_DIRECTORY}", str(credentials))
                 for arg in command[1:]]]
    command[command.index("--port") + 1] = "0"
    log = tmp_path / "dashboard.log"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(tmp_path / "notify"))
    notify.settimeout(20)
    env = fleet_env(f"sqlite:///{tmp_path / 'broker.db'}", FLEET_STATE_DIR=str(tmp_path),
                    NOTIFY_SOCKET=str(tmp_path / "notify"))
    proc = subprocess.Popen([*command, "--logfile", str(log)], cwd=APPS, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        ready = notify.recv(4096).decode()
        assert ready.startswith("READY=1\nSTATUS=serving http://127.0.0.1:")
        url = re.search(r"serving (\S+)", ready).group(1)
        with urllib.request.urlopen(url + "healthz", timeout=5) as answer:
            assert answer.status == 200
        assert Path(tmp_path / "dashboard.db").exists()  # the history, in the state dir
        proc.send_signal(signal.SIGTERM)
        assert notify.recv(4096) == b"STOPPING=1"
        assert proc.wait(15) == 0
    finally:
        notify.close()
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
    wait_for(lambda: "dashboard: stopped" in log.read_text(), 5, message="the last log line")
