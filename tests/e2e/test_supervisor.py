"""contrib/supervisor/fleet.conf, run for real by supervisord (from PyPI) on a private socket.

The shipped file is used as it is, except for what must differ on a test machine: paths,
the user, the broker in the environment, node names made unique to this test, and shorter
start times. The stop/kill settings under test are not touched.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from fleet.engine import states
from tests.support import APPS, ROOT, fleet_env, wait_for

BIN = Path(sys.executable).parent
SUPERVISORD = BIN / "supervisord"
SUPERVISORCTL = BIN / "supervisorctl"

pytestmark = pytest.mark.skipif(not SUPERVISORD.exists(),
                                reason="supervisor is in the test extras: pip install -e .[test]")


def adapt(shipped: str, logs: Path, marker: str, env: dict[str, str]) -> str:
    text = shipped.replace("/opt/fleet/venv/bin/fleet", f"{sys.executable} -m fleet")
    text = text.replace("directory=/srv/fleet", f"directory={APPS}")
    text = re.sub(r"^user=.*\n", "", text, flags=re.MULTILINE)
    text = text.replace("/var/log/fleet", str(logs))
    text = text.replace("-n default", f"-n default{marker}-").replace("-n images",
                                                                     f"-n images{marker}-")
    text = text.replace("fleet beat -l info", f"fleet beat -l info -f {logs}/beat-{marker}.log")
    text = text.replace("-c 4", "-c 1").replace("-c 2", "-c 1")
    text = text.replace("startsecs=3", "startsecs=1")
    variables = ",".join(f'{key}="{value}"' for key, value in env.items())
    return text.replace('environment=PYTHONUNBUFFERED="1"',
                        f'environment=PYTHONUNBUFFERED="1",{variables}')


class Supervisor:
    def __init__(self, directory: Path, env: dict[str, str]):
        self.conf = directory / "supervisord.conf"
        self.sock = directory / "supervisor.sock"
        self.conf.write_text(f"""
[unix_http_server]
file={self.sock}
[supervisord]
logfile={directory / 'supervisord.log'}
pidfile={directory / 'supervisord.pid'}
childlogdir={directory}
[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface
[supervisorctl]
serverurl=unix://{self.sock}
[include]
files = {directory / 'fleet.conf'}
""")
        self.proc = subprocess.Popen([str(SUPERVISORD), "-n", "-c", str(self.conf)],
                                     env=env, start_new_session=True,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def ctl(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
        return subprocess.run([str(SUPERVISORCTL), "-c", str(self.conf), *args],
                              capture_output=True, text=True, timeout=timeout, check=False)

    def states(self) -> dict[str, tuple[str, int | None]]:
        found = {}
        for line in self.ctl("status").stdout.splitlines():
            parts = line.split()
            if len(parts) >= 2:
                pid = int(parts[3].rstrip(",")) if len(parts) > 3 and parts[2] == "pid" else None
                found[parts[0]] = (parts[1], pid)
        return found


def our_processes(marker: str) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if marker in " ".join(proc.info["cmdline"] or []):
            found.append(proc)
    return found


@pytest.fixture
def supervised(tmp_path, sqlite_url) -> Iterator[tuple[Supervisor, str]]:
    marker = uuid.uuid4().hex[:8]
    env = {"FLEET_BROKER_URL": sqlite_url, "FLEET_APP": "testapp",
           "PYTHONPATH": f"{ROOT}:{APPS}", "FLEET_STATE_DIR": str(tmp_path / "state")}
    shipped = (ROOT / "contrib" / "supervisor" / "fleet.conf").read_text()
    (tmp_path / "fleet.conf").write_text(adapt(shipped, tmp_path, marker, env))
    supervisor = Supervisor(tmp_path, fleet_env(sqlite_url))
    try:
        yield supervisor, marker
    finally:
        if supervisor.proc.poll() is None:
            supervisor.proc.send_signal(signal.SIGTERM)
            try:
                supervisor.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(supervisor.proc.pid, signal.SIGKILL)
        for proc in our_processes(marker):
            proc.kill()


def test_supervisord_runs_stops_and_restarts_fleet_nodes(supervised, app, tmp_path):
    supervisor, marker = supervised
    names = {"fleet:fleet-default_0", "fleet:fleet-default_1", "fleet:fleet-images_0",
             "fleet:fleet-beat"}
    wait_for(lambda: {n for n, (state, _) in supervisor.states().items()
                      if state == "RUNNING"} >= names, 30, interval=0.2,
             message=f"all programs RUNNING: {supervisor.states()}")
    import testapp

    assert testapp.add.delay(2, 2).get(timeout=20) == 4
    assert testapp.add.apply_async((3, 3), queue="images").get(timeout=20) == 6
    beat_log = tmp_path / f"beat-{marker}.log"
    wait_for(lambda: beat_log.exists() and "Beat" in beat_log.read_text(), 20,
             message="the beat program's log")

    # stop waits for the running task to finish (warm shutdown of the main process only)
    marker_file = str(tmp_path / "slow")
    slow = testapp.sleep.apply_async((1.5, marker_file), queue="images")
    wait_for(lambda: Path(marker_file + ".started").exists(), 20, message="task start")
    started = time.monotonic()
    stopped = supervisor.ctl("stop", "fleet:fleet-images_0")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert time.monotonic() - started >= 1.0
    assert slow.state == states.SUCCESS and Path(marker_file).exists()
    assert supervisor.states()["fleet:fleet-images_0"][0] == "STOPPED"

    # restart brings a node back (a new process) and it works
    old_pid = supervisor.states()["fleet:fleet-default_0"][1]
    restarted = supervisor.ctl("restart", "fleet:fleet-default_0")
    assert restarted.returncode == 0, restarted.stdout
    wait_for(lambda: supervisor.states()["fleet:fleet-default_0"][0] == "RUNNING", 20,
             interval=0.2, message="default_0 RUNNING again")
    assert supervisor.states()["fleet:fleet-default_0"][1] != old_pid
    assert testapp.add.delay(5, 5).get(timeout=20) == 10

    # shutting supervisord down leaves no fleet process behind
    supervisor.ctl("shutdown")
    supervisor.proc.wait(60)
    wait_for(lambda: not our_processes(marker), 10, message="no fleet process left")
