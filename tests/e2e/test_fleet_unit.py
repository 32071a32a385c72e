"""contrib/systemd/fleet.service, run the way systemd runs it: its ExecStart, ExecReload and
ExecStop lines, as written in the unit, against a fleet.toml with a [multi] fleet.

(systemd itself is not PID 1 here; what it would do is run these commands in order with the
unit's environment, which is what this test does.)"""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

from tests.integration.test_multi import Multi, multi  # noqa: F401 - its fixture and cleanup
from tests.support import ROOT

UNIT = ROOT / "contrib" / "systemd" / "fleet.service"


def exec_lines() -> dict[str, list[str]]:
    lines = {}
    for line in UNIT.read_text().splitlines():
        key, _, value = line.partition("=")
        if key in ("ExecStart", "ExecReload", "ExecStop"):
            argv = shlex.split(value)
            assert argv[0] == "/opt/fleet/venv/bin/fleet"
            lines[key] = [sys.executable, "-m", "fleet", *argv[1:]]
    return lines


def run(argv: list[str], fleet: Multi, cwd: Path) -> subprocess.CompletedProcess:
    done = subprocess.run(argv, env=fleet.env, cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, f"{argv[3:]}: {done.stdout}{done.stderr}"
    return done


def test_start_reload_and_stop_as_the_unit_runs_them(multi, tmp_path):  # noqa: F811
    lines = exec_lines()
    config = tmp_path / "fleet.toml"
    config.write_text(
        'app = "testapp"\n'
        "[multi]\n"
        f'hostname = "{multi.host}"\n'
        "concurrency = 1\n"
        f'pidfile = "{tmp_path}/run/%n.pid"\n'
        f'logfile = "{tmp_path}/log/%n%I.log"\n'
        "nodes = 2\n"
        "[multi.groups.img]\n"
        "nodes = 1\n"
        'queues = "images"\n')
    multi.env["FLEET_CONFIG"] = str(config)  # as fleet.env sets it
    names = ["w1", "w2", "img1"]

    started = run(lines["ExecStart"], multi, tmp_path)
    assert started.stdout.count(": OK") == 3
    before = {name: multi.pid(name) for name in names}
    assert multi.status()[0] == 0

    run(lines["ExecReload"], multi, tmp_path)  # systemctl reload: every node comes back
    code, rows = multi.status()
    assert code == 0, rows
    after = {name: multi.pid(name) for name in names}
    assert all(after[name] != before[name] for name in names)
    assert " queues:       images\n" in multi.log("img1")  # with its own options

    stopped = run(lines["ExecStop"], multi, tmp_path)
    assert multi.status()[0] == 3, stopped.stdout
    assert not any(multi.pidfile(name).exists() for name in names)
