"""`fleet upgrade settings FILE`: the diff, writing in place, the backup, the errors."""

from __future__ import annotations

import stat

import pytest
from click.testing import CliRunner

from fleet.cli import cli, main
from tests.unit.test_upgrade import CELERYCONFIG


def _fleet(*args):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_the_command_prints_the_diff_writes_the_file_and_keeps_the_original(tmp_path):
    path = tmp_path / "celeryconfig.py"
    path.write_text(CELERYCONFIG)
    path.chmod(0o640)
    dry = _fleet("upgrade", "settings", str(path), "--dry-run")
    assert dry.exit_code == 0 and "+worker_concurrency = 4" in dry.output
    assert "5 renamed, 3 commented out (dry run: nothing written)" in dry.output
    assert path.read_text() == CELERYCONFIG
    done = _fleet("upgrade", "settings", str(path))
    assert done.exit_code == 0 and f"the original is {path}.orig" in done.output
    assert (tmp_path / "celeryconfig.py.orig").read_text() == CELERYCONFIG
    assert "worker_concurrency = 4" in path.read_text()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    again = _fleet("upgrade", "settings", str(path))
    assert again.exit_code == 0 and "nothing to change" in again.output


def test_the_command_refuses_to_overwrite_a_backup_and_says_so(tmp_path, capsys):
    path = tmp_path / "celeryconfig.py"
    path.write_text(CELERYCONFIG)
    (tmp_path / "celeryconfig.py.orig").write_text("older")
    with pytest.raises(SystemExit) as exited:
        main(["upgrade", "settings", str(path)])
    assert exited.value.code == 2
    assert "celeryconfig.py.orig exists already" in capsys.readouterr().err
    assert path.read_text() == CELERYCONFIG
    with pytest.raises(SystemExit) as exited:
        main(["upgrade", "settings", str(tmp_path / "missing.py")])
    assert exited.value.code == 2


def test_a_celery_name_warning_is_one_line_for_the_operator(tmp_path):
    import os
    import subprocess
    import sys

    env = {key: value for key, value in os.environ.items() if not key.startswith("FLEET_")}
    env.update(FLEET_STATE_DIR=str(tmp_path / "state"), FLEET_CELERYD_CONCURRENCY="3")
    done = subprocess.run([sys.executable, "-m", "fleet", "report"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "fleet: warning: FLEET_ environment: FLEET_CELERYD_CONCURRENCY is " \
        "Celery's name for FLEET_WORKER_CONCURRENCY: read as FLEET_WORKER_CONCURRENCY " \
        "(rename it; `fleet upgrade settings FILE` does it for a module)\n"
