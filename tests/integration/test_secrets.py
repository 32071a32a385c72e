"""A broker password never printed or written in clear: a sentinel password is planted in a
broker URL (on multi's command line, in fleet.toml, in the environment) and in a dict setting
(broker_transport_options, in fleet.toml and in the environment), a 2-node fleet runs on a
redis-server that requires it, and every output of every command and every file the fleet
writes is searched for it (both halves: it holds an '@', which URL masking used to split).

multi.toml is the one file that keeps it (to restart a node with its own command line): the
test checks it is its owner's alone (0600) and that no command prints it."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import APPS, fleet_env, run_fleet, wait_for

HALVES = ("PWq7x1Lm", "Zr9v3Kd2")
SENTINEL = "@".join(HALVES)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[int]:
    """A redis-server of this test's own that requires the sentinel password."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = _free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
         "no", "--dir", str(tmp_path), "--requirepass", SENTINEL],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import redis

        client = redis.Redis(port=port, password=SENTINEL, socket_timeout=1)
        wait_for(lambda: _pings(client), 10, message="the password-protected redis-server")
        yield port
    finally:
        process.kill()
        process.wait(10)


def _pings(client) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def _leaks(text: str) -> list[str]:
    return [half for half in HALVES if half in text]


def test_a_planted_password_appears_in_no_output_and_no_file(tmp_path, locked_redis):
    url = f"redis://:{SENTINEL}@127.0.0.1:{locked_redis}/0"
    state = tmp_path / "state"
    work = tmp_path / "work"
    work.mkdir()
    (work / "fleet.toml").write_text(
        f'app = "testapp"\nbroker = "{url}"\n\n[settings]\n'
        f'broker_transport_options = {{ password = "{SENTINEL}", socket_keepalive = true }}\n')
    env = fleet_env(url, FLEET_STATE_DIR=str(state), FLEET_RESULT_BACKEND=url,
                    FLEET_BROKER_TRANSPORT_OPTIONS=json.dumps({"password": SENTINEL}))
    env["PYTHONPATH"] += os.pathsep + str(APPS)
    outputs: dict[str, str] = {}

    def fleet(*args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = run_fleet(*args, env=env, cwd=work, timeout=60)
        outputs[" ".join(args)] = done.stdout + done.stderr
        if check:
            assert done.returncode == 0, f"{args}: {done.stdout}{done.stderr}"
        return done

    events = subprocess.Popen([sys.executable, "-m", "fleet", "events", "--dump"], cwd=work,
                              env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    try:
        fleet("multi", "start", "2", "-A", "testapp", f"--broker={url}", "-c", "1",
              "--logfile=logs/%n%I.log", "--pidfile=run/%n.pid", "--",
              f'broker_transport_options={{"password": "{SENTINEL}"}}')
        for args in (["multi", "show"], ["multi", "get", "w1"], ["multi", "names"],
                     ["multi", "status"], ["multi", "status", "--json"], ["report"],
                     ["config", "show"], ["config", "show", "--json"], ["config", "check"],
                     ["inspect", "conf"], ["inspect", "conf", "--json"], ["inspect", "report"],
                     ["inspect", "stats", "--json"], ["inspect", "ping"], ["status"],
                     ["queues"]):
            # replies are what is searched: wait for them on a loaded machine (default 1 s)
            wait = ("--timeout", "10") if args[0] in ("inspect", "status") else ()
            done = fleet(*args, *wait)
            outputs[" ".join(args)] = done.stdout + done.stderr  # (the name later checks use)
        task_id = fleet("call", "testapp.add", "--args", "[2, 3]").stdout.strip()
        assert fleet("result", task_id).stdout.strip() == "5"
        unreachable = f"redis://:{SENTINEL}@127.0.0.1:{_free_port()}/0"
        assert fleet("-b", unreachable, "status", check=False).returncode != 0
        (work / "bad.toml").write_text(f'[settings]\nresult_backend = ["{url}"]\n')
        assert fleet("--config", "bad.toml", "config", "check", check=False).returncode == 78
        fleet("worker", "--detach", "-A", "testapp", "-n", "solo@%h", "-c", "1",
              "--logfile=logs/%n%I.log", "--pidfile=run/%n.pid", "-b", url)
        solo = int((work / "run" / "solo.pid").read_text().split()[0])
        os.kill(solo, signal.SIGTERM)
        wait_for(lambda: not (work / "run" / "solo.pid").exists(), 20, message="solo to stop")
        fleet("multi", "stopwait", "--timeout", "20")
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(events.pid, signal.SIGINT)
        try:
            outputs["events --dump"] = events.communicate(timeout=10)[0]
        except subprocess.TimeoutExpired:
            os.killpg(events.pid, signal.SIGKILL)
            outputs["events --dump"] = events.communicate()[0]
        run_fleet("multi", "kill", env=env, cwd=work)

    assert "worker-online" in outputs["events --dump"] or "task-" in outputs["events --dump"]
    assert "********" in outputs["multi show"] and "********" in outputs["inspect conf"]
    leaked = {command: _leaks(text) for command, text in outputs.items() if _leaks(text)}
    assert not leaked, f"the password was printed by: {leaked}"
    files = [path for path in (work, state) for path in path.rglob("*") if path.is_file()]
    written = {str(path) for path in files
               if path.name not in ("multi.toml", "fleet.toml", "bad.toml")  # (the inputs)
               and _leaks(path.read_text(errors="replace"))}
    assert not written, f"the password was written in clear to {written}"
    assert [path.name for path in files if path.name.endswith(".log")]
    multi_toml = state / "multi.toml"
    assert multi_toml.stat().st_mode & 0o777 == 0o600
    assert multi_toml.stat().st_uid == os.geteuid()
