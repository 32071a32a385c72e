"""`fleet worker` as PID 1, as in a container: run in a new PID namespace (unshare), it shuts
down warmly on TERM, reaps orphaned grandchildren, and exits with a meaningful code."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.support import APPS, fleet_env, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("unshare"),
                                reason="needs root and unshare(1) for a PID namespace")


def test_node_as_pid_1_reaps_orphans_and_shuts_down_warmly(tmp_path, sqlite_url, app):
    log = tmp_path / "node.log"
    command = ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-m", "fleet",
               "worker", "-A", "testapp", "-c", "1", "-l", "info", "--logfile", str(log)]
    outer = subprocess.Popen(command, cwd=APPS, env=fleet_env(sqlite_url),
                             start_new_session=True)
    try:
        wait_for(lambda: log.exists() and " ready: " in log.read_text(), 20,
                 message="the node to be ready")
        [node] = psutil.Process(outer.pid).children()
        [nspid] = [line.split()[1:] for line in
                   Path(f"/proc/{node.pid}/status").read_text().splitlines()
                   if line.startswith("NSpid:")]
        assert nspid == [str(node.pid), "1"]  # the node is PID 1 inside the namespace
        import testapp

        testapp.spawn_orphan.delay(0.2).get(timeout=20)

        def orphans_reaped() -> bool:
            zombies = [child for child in node.children()
                       if child.status() == psutil.STATUS_ZOMBIE]
            sleepers = [child for child in node.children() if "sleep" in child.name()]
            return not zombies and not sleepers

        # the orphan was reparented to the node (PID 1) and reaped when it exited
        wait_for(orphans_reaped, 5, message="the orphaned grandchild to be reaped")
        marker = str(tmp_path / "finish")
        running = testapp.sleep.delay(0.5, marker)
        wait_for(lambda: Path(marker + ".started").exists(), 10, message="task start")
        node.send_signal(signal.SIGTERM)
        assert outer.wait(20) == 0  # unshare returns the node's own exit code
        assert running.get(timeout=5) == 0.5 and Path(marker).exists()
        assert "Warm shutdown (TERM)" in log.read_text()
    finally:
        if outer.poll() is None:
            os.killpg(outer.pid, signal.SIGKILL)
            outer.wait(5)
