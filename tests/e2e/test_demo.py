"""The README's first command: the demo fleet runs green (it checks its own output)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support import ROOT


def test_the_readme_demo_runs_green(tmp_path):
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLEET_")}
    env["TMPDIR"] = str(tmp_path)  # its state directory, removed by the demo when green
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "demo.py")], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Demo finished: everything behaved as shown." in done.stdout
    assert done.stdout.count(": OK") >= 3  # three nodes started, verified
    assert not list(tmp_path.glob("fleet-demo-*"))  # it leaves nothing behind
