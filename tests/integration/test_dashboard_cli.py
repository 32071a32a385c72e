"""`fleet dashboard` as an operator runs it: its refusals (one line, exit 2), its process
title, and a clean stop on TERM and INT."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from tests.support import APPS, fleet_env, run_fleet, wait_for


@pytest.fixture
def env(tmp_path):
    return fleet_env(f"sqlite:///{tmp_path / 'broker.db'}", FLEET_STATE_DIR=str(tmp_path))


def one_line_error(done: subprocess.CompletedProcess) -> str:
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "Traceback" not in done.stderr
    return lines[0]


def test_help_names_every_option(env):
    done = run_fleet("dashboard", "--help", env=env)
    assert done.returncode == 0
    for option in ("--address", "--port", "--auth USER:PASSWORD", "--auth-file", "--url-prefix",
                   "--history-file", "--max-tasks", "--retention", "--no-enable-events",
                   "-A, --app", "-b, --broker", "ps"):
        assert option in done.stdout, option
    assert "dashboard" in run_fleet("--help", env=env).stdout


def test_another_address_without_logins_is_refused(env):
    done = run_fleet("dashboard", "--address", "0.0.0.0", env=env)
    assert done.returncode == 2
    line = one_line_error(done)
    assert "refusing to listen on 0.0.0.0 without authentication" in line
    assert "--auth-file" in line and "FLEET_DASHBOARD_AUTH" in line


def test_auth_and_auth_file_together_are_refused(env, tmp_path):
    done = run_fleet("dashboard", "--auth", "a:b", "--auth-file", str(tmp_path / "f"), env=env)
    assert done.returncode == 2 and "cannot be used together" in one_line_error(done)


def test_without_the_extra_it_says_what_to_install(env):
    hide = ("import sys; sys.modules['starlette'] = None; from fleet.cli import main; "
            "main(['dashboard'])")
    done = subprocess.run([sys.executable, "-c", hide], env=env, cwd=APPS, text=True,
                          capture_output=True, timeout=30, check=False)
    assert done.returncode == 2
    assert one_line_error(done) == ("fleet: the dashboard needs packages that are not "
                                    "installed (starlette); pip install 'fleet[dashboard]'")


def test_a_busy_port_is_one_clear_line(env):
    with socket.create_server(("127.0.0.1", 0)) as busy:
        port = busy.getsockname()[1]
        done = run_fleet("dashboard", "--port", str(port), env=env)
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in one_line_error(done)


def start(env: dict, tmp_path: Path, *args: str) -> tuple[subprocess.Popen, str, Path]:
    log = tmp_path / "dashboard.log"
    proc = subprocess.Popen([sys.executable, "-m", "fleet", "dashboard", "--port", "0",
                             "--logfile", str(log), *args], cwd=APPS, env=env,
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)

    def serving() -> str | None:
        if proc.poll() is not None:
            raise AssertionError(f"exited with {proc.returncode}: {log.read_text()}")
        found = re.search(r"serving (http://\S+)/ ", log.read_text() if log.exists() else "")
        return found.group(1) if found else None

    return proc, str(wait_for(serving, 20, 0.05, "the dashboard to serve")), log


@contextlib.contextmanager
def running(env: dict, tmp_path: Path, *args: str):
    proc, url, log = start(env, tmp_path, *args)
    try:
        yield proc, url, log
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_term_and_int_stop_it_cleanly(env, tmp_path, signum):
    with running(env, tmp_path) as (proc, url, log):
        with urllib.request.urlopen(url + "/healthz", timeout=5) as answer:
            assert answer.status == 200
        stream = urllib.request.urlopen(url + "/api/stream", timeout=5)  # an open page
        assert stream.readline().startswith(b"retry:")
        proc.send_signal(signum)
        assert proc.wait(10) == 0
        stream.close()
    assert "dashboard: stopped" in log.read_text()


def test_the_password_is_in_neither_ps_nor_the_log(env, tmp_path):
    with running(env, tmp_path, "--auth", "admin:hunter2-secret") as (proc, url, log):
        title = Path(f"/proc/{proc.pid}/cmdline").read_bytes().replace(b"\0", b" ")
        assert b"hunter2" not in title and title.startswith(b"fleet dashboard 127.0.0.1")
        request = urllib.request.Request(url + "/api/overview")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(request, timeout=5)
        assert refused.value.code == 401
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0
    assert "hunter2" not in log.read_text() and "1 user(s)" in log.read_text()
