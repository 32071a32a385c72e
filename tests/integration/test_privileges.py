"""Running as root, for real (CI runs as root): a node started with --uid runs as that user
with exactly its groups, gets its files made by that user and the state directory of the root
that started it; the issue's symlink reproduction changes nothing; root refuses to write into
a directory the user can write, and loads no code through a ./fleet.toml the user owns.

The test user cannot read this machine's Python (it lives under a 0700 home), so the real node
runs on an interpreter the user can read (the system's python3.X of the same version), with
fleet, its dependencies and the test app copied into a world-readable directory."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

from tests.support import APPS, ROOT, fleet_env, run_fleet, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (CI runs as root)")

#: What a node on the embedded SQLite broker imports (redis-py would also need async_timeout
#: on the system's Python 3.11.2, which nothing here installs).
DEPENDENCIES = ("click", "psutil", "filelock", "tomli_w", "setproctitle")


PRIVAPP = """
import os
from fleet import Fleet
from fleet.paths import state_dir

app = Fleet("privapp")

@app.task
def where():
    return {"state_dir": str(state_dir()), "uids": list(os.getresuid()),
            "groups": sorted(os.getgroups())}
"""


def _runs_as(python: str, user, env: dict[str, str]) -> bool:
    try:
        done = subprocess.run([python, "-c", "import fleet.cli, psutil, setproctitle, filelock"],
                              user=user.uid, group=user.gid, extra_groups=[], env=env,
                              cwd="/", capture_output=True, timeout=30, check=False)
    except OSError:
        return False
    return done.returncode == 0


@pytest.fixture
def reachable(open_tmp, system_user) -> tuple[str, dict[str, str]]:
    """(python, environment) with which the test user can run fleet: an interpreter it can
    read and fleet, its dependencies and the test app copied where it can read them."""
    lib = open_tmp / "lib"
    lib.mkdir()
    shutil.copytree(ROOT / "fleet", lib / "fleet", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(APPS / "testapp.py", lib / "testapp.py")
    (lib / "privapp.py").write_text(PRIVAPP)
    for name in DEPENDENCIES:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            continue
        if spec.submodule_search_locations:
            shutil.copytree(Path(spec.origin).parent, lib / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(spec.origin, lib / Path(spec.origin).name)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(lib), "LANG": "C.UTF-8",
           "PYTHONDONTWRITEBYTECODE": "1"}
    version = f"python3.{sys.version_info.minor}"
    for python in dict.fromkeys([sys.executable, f"/usr/bin/{version}",
                                 shutil.which(version) or sys.executable]):
        if _runs_as(python, system_user, env):
            return python, env
    pytest.skip(f"no {version} the test user can run (this one lives where it cannot read)")


def _node_pid(pidfile: Path) -> int:
    return int(pidfile.read_text().split()[0])


def test_a_node_started_by_root_with_uid_runs_as_that_user_for_real(
        reachable, open_tmp, system_user):
    """Its ids and groups as the kernel has them, its files made by it, root's state
    directory handed on, and tasks run: the user's own CLI reaches it through the broker
    (root's CLI refuses that broker: its directory is the user's)."""
    python, env = reachable
    nodes = open_tmp / "nodes"  # the user's: its broker, logs and pid file live here
    nodes.mkdir()
    os.chown(nodes, system_user.uid, system_user.gid)
    env = {**env, "FLEET_BROKER_URL": f"sqlite:///{nodes}/broker.db"}
    done = subprocess.run(
        [python, "-m", "fleet", "worker", "--detach", "--uid", system_user.name, "-A",
         "privapp", "-n", "priv@%h", "-c", "1", "--logfile", f"{nodes}/logs/%n%I.log",
         "--pidfile", f"{nodes}/run/%n.pid"], cwd=open_tmp, env=env, capture_output=True,
        text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    pid = _node_pid(nodes / "run" / "priv.pid")
    try:
        node = psutil.Process(pid)
        assert node.uids() == (system_user.uid,) * 3
        assert node.gids() == (system_user.gid,) * 3
        status = Path(f"/proc/{pid}/status").read_text()
        groups = next(line for line in status.splitlines() if line.startswith("Groups:"))
        assert sorted(map(int, groups.split()[1:])) == sorted({system_user.gid,
                                                              system_user.extra_gid})
        for path in ("logs", "run", "logs/priv.log", "logs/priv-1.log", "run/priv.pid",
                     "broker.db"):
            assert (nodes / path).stat().st_uid == system_user.uid, path
        assert node.children()[0].uids() == (system_user.uid,) * 3

        def as_user(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run([python, "-m", "fleet", *args], user=system_user.uid,
                                  group=system_user.gid, extra_groups=[], env=env, cwd="/",
                                  capture_output=True, text=True, timeout=60, check=False)

        task = as_user("call", "privapp.where")
        assert task.returncode == 0, task.stderr
        answer = as_user("result", "-t", "20", task.stdout.strip())
        assert answer.returncode == 0, answer.stderr
        where = json.loads(answer.stdout)
        assert where["state_dir"] == "/var/lib/fleet"  # root's, handed on: not the user's HOME
        assert where["uids"] == [system_user.uid] * 3
        assert where["groups"] == sorted({system_user.gid, system_user.extra_gid})
        refused = subprocess.run([python, "-m", "fleet", "queues"], env=env, cwd="/",
                                 capture_output=True, text=True, timeout=60, check=False)
        assert refused.returncode == 77 and "can be written by user" in refused.stderr
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not psutil.pid_exists(pid) or
                 psutil.Process(pid).status() == psutil.STATUS_ZOMBIE, 20,
                 message="the node to stop")


def test_the_issues_symlink_reproduction_changes_no_owner(open_tmp, system_user):
    """root: `fleet worker --detach --uid nobody --logfile logs/%n%I.log`, where the node's user
    had planted logs/w1.log -> a root-owned file: the target used to be chowned to it."""
    logs = open_tmp / "logs"
    logs.mkdir()
    os.chown(logs, system_user.uid, system_user.gid)
    precious = open_tmp / "root-owned"
    precious.write_text("root's\n")
    (logs / "w1.log").symlink_to(precious)
    os.lchown(logs / "w1.log", system_user.uid, system_user.gid)
    env = fleet_env(f"sqlite:///{open_tmp}/broker.db")
    done = run_fleet("worker", "--detach", "--uid", system_user.name, "-A", "testapp", "-n",
                     "w1@%h", "--logfile", "logs/%n%I.log", "--pidfile", f"{open_tmp}/w1.pid",
                     env=env, cwd=open_tmp)
    assert done.returncode == 73, done.stdout + done.stderr
    assert "is a symbolic link" in done.stderr and len(done.stderr.strip().splitlines()) == 1
    info = precious.stat()
    assert (info.st_uid, info.st_gid) == (0, 0) and precious.read_text() == "root's\n"


def test_root_refuses_a_state_directory_the_user_can_write(open_tmp, system_user):
    state = open_tmp / "state"
    state.mkdir()
    os.chown(state, system_user.uid, system_user.gid)
    env = fleet_env("", FLEET_STATE_DIR=str(state))
    env.pop("FLEET_BROKER_URL")
    for command in (["status"], ["queues"], ["multi", "start", "1", "-A", "testapp"]):
        done = run_fleet(*command, env=env, cwd=open_tmp)
        assert done.returncode == 77, (command, done.stdout, done.stderr)
        line = done.stderr.strip()
        assert len(line.splitlines()) == 1 and f"{state} can be written by user" in line
        assert f"sudo -u {system_user.name}" in line
    assert not (state / "broker.db").exists() and not (state / "multi.toml").exists()


def test_root_loads_no_code_through_a_fleet_toml_another_user_owns(open_tmp, system_user):
    work = open_tmp / "work"
    (work / "evil").mkdir(parents=True)
    marker = open_tmp / "imported"
    (work / "evil" / "__init__.py").write_text(
        f"open({str(marker)!r}, 'w').write('ran')\nfrom fleet import Fleet\napp = Fleet('evil')\n")
    (work / "fleet.toml").write_text('app = "evil"\n')
    os.chown(work / "fleet.toml", system_user.uid, system_user.gid)
    env = fleet_env(f"sqlite:///{open_tmp}/broker.db")
    for command in (["report"], ["config", "show"], ["queues"]):
        done = run_fleet(*command, env=env, cwd=work)
        assert done.returncode == 0, done.stderr
        warning = [line for line in done.stderr.splitlines() if "fleet.toml" in line]
        assert warning == [f"fleet: ignoring ./fleet.toml: it belongs to user "
                           f"{system_user.name}, and as root fleet loads no code through such"
                           " a file; pass --config ./fleet.toml to use it anyway"]
        assert not marker.exists()
    (work / "fleet.toml").chmod(0o666)
    os.chown(work / "fleet.toml", 0, 0)
    assert "can be changed by every user" in run_fleet("report", env=env, cwd=work).stderr
    assert not marker.exists()
    done = run_fleet("--config", "./fleet.toml", "report", env=env, cwd=work)
    assert done.returncode == 0 and marker.exists()  # named explicitly: the operator's choice
