"""`fleet multi` with real detached nodes: started verified, remembered, stopped safely.

Every node gets a unique host part (`w1@t<random>.test`), so the cleanup can find every
process a test started (launchers, nodes and their pool children all carry it in their
command line or title) and kill it, even when the test failed half way.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from fleet.daemon import pidfile_is_locked, read_pidfile
from fleet.multictl.state import StateFile
from tests.integration.conftest import FAST_RECOVERY
from tests.support import fleet_env, run_fleet, wait_for


@dataclass
class Multi:
    """Runs `fleet multi` for one test, with its files under the test's directory."""

    env: dict[str, str]
    tmp: Path
    host: str

    def run(self, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
        return run_fleet("multi", *args, env=self.env, timeout=timeout)

    def start(self, *args: str, files: bool = True) -> subprocess.CompletedProcess:
        extra = [f"--pidfile={self.tmp}/run/%n.pid", f"--logfile={self.tmp}/log/%n%I.log"]
        return self.run("start", f"--hostname={self.host}", *(extra if files else []), *args)

    def name(self, short: str) -> str:
        return f"{short}@{self.host}"

    def pidfile(self, short: str) -> Path:
        return self.tmp / "run" / f"{short}.pid"

    def pid(self, short: str) -> int:
        contents = read_pidfile(self.pidfile(short))
        assert contents is not None, f"no pid file for {short}"
        return contents.pid

    def log(self, short: str, suffix: str = "") -> str:
        path = self.tmp / "log" / f"{short}{suffix}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def records(self) -> dict:
        return StateFile(self.tmp / "state" / "multi.toml").load()

    def status(self, *args: str) -> tuple[int, list[dict]]:
        result = self.run("status", "--json", *args)
        return result.returncode, json.loads(result.stdout)

    def ours(self) -> list[psutil.Process]:
        found = []
        for process in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error, TypeError):
                if self.host in " ".join(process.info["cmdline"] or ()):
                    found.append(process)
        return found

    def cleanup(self) -> None:
        """SIGKILL every process this test started (by process group where it leads one)."""
        for _ in range(3):
            processes = self.ours()
            if not processes:
                return
            for process in processes:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    if os.getpgid(process.pid) == process.pid:
                        os.killpg(process.pid, signal.SIGKILL)
                    else:
                        os.kill(process.pid, signal.SIGKILL)
            psutil.wait_procs(processes, timeout=3)


def _multi(broker: str, tmp_path: Path) -> Iterator[Multi]:
    host = f"t{uuid.uuid4().hex[:8]}.test"
    env = fleet_env(broker, FLEET_STATE_DIR=str(tmp_path / "state"))
    helper = Multi(env, tmp_path, host)
    try:
        yield helper
    finally:
        helper.cleanup()


@pytest.fixture
def multi(sqlite_url: str, tmp_path: Path) -> Iterator[Multi]:
    """Process management only: the SQLite broker is enough."""
    yield from _multi(sqlite_url, tmp_path)


@pytest.fixture
def multi_any(broker_url: str, tmp_path: Path) -> Iterator[Multi]:
    """Where the broker matters: run on both."""
    yield from _multi(broker_url, tmp_path)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


# -- start -----------------------------------------------------------------------------------


def test_the_issue_example_starts_ten_consuming_nodes_with_their_own_options(multi_any):
    multi = multi_any
    result = multi.start("10", "-A", "testapp", "-c", "1", "-l", "info", "-Q:1-3",
                         "images,video", "-Q:4,5", "data", "-Q", "default", "-L:4,5", "debug")
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": OK") == 10
    code, rows = multi.status()
    assert code == 0
    assert [row["state"] for row in rows] == ["running"] * 10
    queues = {1: "images, video", 2: "images, video", 3: "images, video", 4: "data",
              5: "data", **{n: "default" for n in range(6, 11)}}
    for number, shown in queues.items():
        short = f"w{number}"
        argv = multi.run("get", short).stdout.split()
        level = "debug" if number in (4, 5) else "info"
        assert f"--loglevel={level}" in argv, argv
        assert argv[argv.index("-n") + 1] == multi.name(short)
        assert f" queues:       {shown}\n" in multi.log(short)
    records = multi.records()
    assert list(records) == [multi.name(f"w{n}") for n in range(1, 11)]
    assert all(record.pid == multi.pid(record.short) for record in records.values())


def test_each_pool_child_logs_to_its_own_percent_I_file(multi):
    result = multi.start("w1", "-A", "testapp", "-c", "2")
    assert result.returncode == 0, result.stdout
    for suffix in ("", "-1", "-2"):
        assert (multi.tmp / "log" / f"w1{suffix}.log").exists()
    assert " ready: " in multi.log("w1")


def test_a_node_whose_app_cannot_be_imported_is_reported_failed_with_the_error(multi):
    result = multi.start("web", "-A", "no_such_app_here", "-c", "1")
    assert result.returncode == 1
    assert "web@" in result.stdout and "FAILED" in result.stdout
    assert "exited with code 4" in result.stdout
    assert "no_such_app_here" in result.stdout  # the reason and the log's last lines
    assert "no_such_app_here" in multi.log("web")
    code, rows = multi.status()
    assert code == 3 and rows[0]["state"] == "stopped"


def test_a_bad_option_is_reported_failed_and_kept_in_the_log(multi):
    result = multi.start("web", "-A", "testapp", "--concurrency=0")
    assert result.returncode == 1
    assert "FAILED" in result.stdout and "concurrency" in result.stdout
    assert "concurrency" in multi.log("web")


def test_starting_twice_does_not_start_a_second_copy(multi):
    assert multi.start("w1", "-A", "testapp", "-c", "1").returncode == 0
    pid = multi.pid("w1")
    again = multi.start("w1", "-A", "testapp", "-c", "1")
    assert again.returncode == 0
    assert f"already running (pid {pid})" in again.stdout
    assert multi.pid("w1") == pid
    mains = [p for p in multi.ours() if " main" in " ".join(p.cmdline())]
    assert [p.pid for p in mains] == [pid]


def test_a_detached_node_runs_in_the_directory_multi_was_started_from(multi):
    assert multi.start("w1", "-A", "testapp", "-c", "1").returncode == 0
    assert psutil.Process(multi.pid("w1")).cwd() == str(Path(__file__).parent.parent / "apps")


# -- stop, stopwait, kill, status, without repeating options ---------------------------------


def test_stop_stopwait_kill_and_status_need_no_repeated_options(multi):
    assert multi.start("3", "-A", "testapp", "-c", "1").returncode == 0
    pids = [multi.pid(f"w{n}") for n in (1, 2, 3)]

    stopped = multi.run("stop", "w1")
    assert stopped.returncode == 0 and f"TERM -> {pids[0]}" in stopped.stdout
    wait_for(lambda: not alive(pids[0]), 10, message="w1 to exit")
    assert not multi.pidfile("w1").exists()

    waited = multi.run("stopwait", "2")  # by position, as at start
    assert waited.returncode == 0 and "DOWN" in waited.stdout
    assert not alive(pids[1])

    code, rows = multi.status()
    assert code == 3
    assert [row["state"] for row in rows] == ["stopped", "stopped", "running"]

    children = psutil.Process(pids[2]).children()
    killed = multi.run("kill", "w3")
    assert killed.returncode == 0 and "SIGKILL" in killed.stdout
    assert not alive(pids[2]) and not any(alive(child.pid) for child in children)
    assert not multi.pidfile("w3").exists()

    restarted = multi.run("start")  # no nodes: the remembered ones, with their arguments
    assert restarted.returncode == 0 and restarted.stdout.count(": OK") == 3
    assert multi.status()[0] == 0


def test_stopwait_returns_only_after_the_running_task_finished(multi_any, app):
    multi = multi_any
    from testapp import sleep

    assert multi.start("w1", "-A", "testapp", "-c", "1").returncode == 0
    marker = str(multi.tmp / "task")
    result = sleep.delay(3, marker)  # long enough for a progress line (one a second)
    wait_for(lambda: Path(marker + ".started").exists(), 15, message="the task to start")
    waited = multi.run("stopwait")
    assert waited.returncode == 0, waited.stdout
    assert Path(marker).exists()  # the task had finished when stopwait returned
    assert f"still stopping: {multi.name('w1')}" in waited.stdout, waited.stdout
    assert result.get(timeout=10) == 3
    assert not alive(multi.records()[multi.name("w1")].pid)


def test_stopwait_timeout_kills_a_node_stuck_in_a_task(multi_any, app):
    multi = multi_any
    from testapp import sleep

    assert multi.start("w1", "-A", "testapp", "-c", "1").returncode == 0
    pid = multi.pid("w1")
    marker = str(multi.tmp / "task")
    sleep.delay(60, marker)
    wait_for(lambda: Path(marker + ".started").exists(), 15, message="the task to start")
    child = int(Path(marker + ".started").read_text())
    waited = multi.run("stopwait", "--timeout", "0.5")
    assert waited.returncode == 1
    assert "SIGKILL" in waited.stdout and "still running after 0.5s" in waited.stdout
    assert not alive(pid) and not alive(child)
    assert not multi.pidfile("w1").exists()


def test_a_stale_pid_file_naming_an_unrelated_process_is_reported_and_never_signalled(multi):
    assert multi.start("w1", "-A", "testapp", "-c", "1").returncode == 0
    assert multi.run("stopwait").returncode == 0
    bystander = subprocess.Popen(["sleep", "60"], start_new_session=True)
    try:
        multi.pidfile("w1").write_text(f"{bystander.pid}\n{multi.name('w1')}\n")
        code, rows = multi.status()
        assert code == 3 and rows[0]["state"] == "not ours"
        for command in ("stop", "kill"):
            result = multi.run(command, "w1")
            assert result.returncode == 0
            multi.pidfile("w1").write_text(f"{bystander.pid}\n")
        result = multi.run("stopwait", "w1")
        assert "stale pid file" in result.stdout and "left alone" in result.stdout
        assert not multi.pidfile("w1").exists()
        assert bystander.poll() is None  # never signalled
    finally:
        bystander.kill()
        bystander.wait()


def test_a_pid_file_of_a_dead_process_is_stale_and_removed_at_start(multi):
    multi.pidfile("w1").parent.mkdir(parents=True)
    multi.pidfile("w1").write_text("999999\n")
    result = multi.start("w1", "-A", "testapp", "-c", "1")
    assert result.returncode == 0
    assert "removed stale pid file" in result.stdout
    assert multi.pid("w1") != 999999


# -- restart and reload ----------------------------------------------------------------------


def test_restart_rolling_keeps_at_least_one_node_up(multi):
    assert multi.start("2", "-A", "testapp", "-c", "1").returncode == 0
    before = [multi.pid("w1"), multi.pid("w2")]
    low = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.005):  # sample every 5 ms until the restart returned
            up = sum(pidfile_is_locked(multi.pidfile(s)) for s in ("w1", "w2"))
            low.append(up)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        result = multi.run("restart", "--rolling")
    finally:
        stop.set()
        sampler.join()
    assert result.returncode == 0, result.stdout
    assert min(low) >= 1 and len(low) > 10
    after = [multi.pid("w1"), multi.pid("w2")]
    assert not set(before) & set(after)
    lines = [line.strip() for line in result.stdout.splitlines()]
    w1_ok = next(i for i, line in enumerate(lines) if line.startswith(f"> {multi.name('w1')}: OK"))
    w2_term = next(i for i, line in enumerate(lines) if f"{multi.name('w2')}: TERM" in line)
    assert w1_ok < w2_term  # w2 was only stopped once w1 was back


def test_reload_keeps_the_pid_and_the_node_keeps_working(multi_any, app):
    multi = multi_any
    from testapp import add

    assert multi.start("w1", "-A", "testapp", "-c", "1").returncode == 0
    pid = multi.pid("w1")
    result = multi.run("reload")
    assert result.returncode == 0 and f"HUP -> {pid}" in result.stdout
    locked = []

    def restarted() -> bool:  # meanwhile, the pid file never goes away or unlocked
        locked.append(pidfile_is_locked(multi.pidfile("w1")))
        return multi.log("w1").count(" ready: ") == 2

    wait_for(restarted, 20, interval=0.002, message="the second ready")
    assert all(locked) and len(locked) > 5
    assert multi.pid("w1") == pid and pidfile_is_locked(multi.pidfile("w1"))
    assert add.delay(2, 3).get(timeout=10) == 5
    assert multi.status()[0] == 0


def test_usr1_writes_every_stack_into_the_log(multi):
    assert multi.start("w1", "-A", "testapp", "-c", "1").returncode == 0
    assert multi.run("stop", "-USR1").returncode == 0
    wait_for(lambda: "Stack dump requested" in multi.log("w1"), 10, message="the dump")
    wait_for(lambda: "Current thread" in multi.log("w1") or "Thread 0x" in multi.log("w1"),
             10, message="a thread's stack")
    assert multi.status()[0] == 0  # USR1 does not stop the node


def test_ttin_and_ttou_grow_and_shrink_a_detached_node(multi):
    assert multi.start("w1", "-A", "testapp", "-c", "1").returncode == 0
    node = psutil.Process(multi.pid("w1"))
    multi.run("stop", "-TTIN")
    wait_for(lambda: len(node.children()) == 2, 10, message="two children")
    multi.run("stop", "--signal=TTOU")
    wait_for(lambda: len(node.children()) == 1, 10, message="one child")


# -- the other commands ----------------------------------------------------------------------


def test_show_names_get_and_expand_preview_a_fleet_with_spec(multi):
    shown = multi.run("show", "--spec", "2", "-A", "testapp", f"--hostname={multi.host}")
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert len(lines) == 2 and "worker --detach -n" in lines[0] and "--app=testapp" in lines[0]
    names = multi.run("names", "--spec", "web", "img", f"--hostname={multi.host}")
    assert names.stdout.split() == [multi.name("web"), multi.name("img")]
    expanded = multi.run("expand", "--spec", "%n.%d|%%", "web@a.example.com").stdout.split()
    assert expanded == ["web.example.com|%"]
    got = multi.run("get", "--spec", "2", "3", "-A", "testapp", f"--hostname={multi.host}")
    assert f"-n {multi.name('w2')}" in got.stdout
    assert multi.run("get", "--spec", "nosuch", "2").returncode == 2
    assert not multi.records()  # nothing was started or remembered


def test_numbers_and_ranges_select_remembered_nodes_by_position_on_every_command(multi):
    # Issue 17: `stop 3` was the 3rd remembered node, but `names 2` made two new names and
    # `names 1-3` a node called `1-3`.
    assert multi.start("web", "img", "-A", "testapp", "-c", "1").returncode == 0
    assert multi.start("2", "-A", "testapp", "-c", "1").returncode == 0  # w1, w2
    order = [multi.name(short) for short in ("web", "img", "w1", "w2")]
    assert multi.run("names").stdout.split() == order
    assert multi.run("names", "2").stdout.split() == [order[1]]
    assert multi.run("names", "1-3").stdout.split() == order[:3]
    assert multi.run("names", "4,web").stdout.split() == [order[0], order[3]]
    [shown] = multi.run("show", "3").stdout.splitlines()
    assert f"-n {order[2]}" in shown
    assert multi.run("expand", "%n", "2-3").stdout.split() == ["img", "w1"]
    assert f"-n {order[1]}" in multi.run("get", "2").stdout
    code, rows = multi.status("2")
    assert code == 0 and [row["node"] for row in rows] == [order[1]]
    bad = multi.run("names", "5")
    assert bad.returncode == 2 and "there is no node 5: there are 4 nodes" in bad.stderr
    named = multi.run("start", "1-3", "-A", "testapp")
    assert named.returncode == 2 and "selects nodes by position" in named.stderr
    mixed = multi.run("stop", "3", "-A", "testapp")
    assert mixed.returncode == 2 and "--app is for start" in mixed.stderr
    assert multi.run("stopwait", "3").returncode == 0
    assert [row["state"] for row in multi.status()[1]] == \
        ["running", "running", "stopped", "running"]


def test_get_prints_a_command_that_a_shell_runs_as_that_node(multi, tmp_path):
    assert multi.start("w1", "-A", "testapp", "-c", "1").returncode == 0
    got = multi.run("get", "w1")
    assert got.returncode == 0 and got.stdout.startswith("cd ")
    assert "FLEET_STATE_DIR=" in got.stdout and "FLEET_BROKER_URL=" in got.stdout
    assert multi.run("stopwait", "w1").returncode == 0
    elsewhere = {key: value for key, value in os.environ.items()
                 if not key.startswith("FLEET_") and key != "PYTHONPATH"}
    pasted = subprocess.run(["sh", "-c", got.stdout], cwd=tmp_path, env=elsewhere,
                            capture_output=True, text=True, timeout=60, check=False)
    assert pasted.returncode == 0, pasted.stdout + pasted.stderr
    assert f"{multi.name('w1')}: ready (pid {multi.pid('w1')})" in pasted.stdout
    code, rows = multi.status()
    assert code == 0 and rows[0]["consuming"] is True


def test_an_unknown_command_and_a_bad_selector_exit_2(multi):
    unknown = multi.run("stpo")
    assert unknown.returncode == 2 and "did you mean stop" in unknown.stderr
    bad = multi.run("show", "--spec", "3", "-c:4", "2")
    assert bad.returncode == 2 and "'4'" in bad.stderr


def test_commands_on_no_known_nodes_say_so(multi):
    result = multi.run("stop")
    assert result.returncode == 1 and "no nodes are known" in result.stderr
    names = multi.run("names", "3")
    assert names.returncode == 1 and "add --spec (fleet multi names --spec 3)" in names.stderr


def test_status_tells_a_node_that_is_alive_but_not_consuming(multi_any):
    multi = multi_any
    multi.env.update(FAST_RECOVERY)  # heartbeats every 0.2 s, stale after 1 s
    assert multi.start("w1", "-A", "testapp", "-c", "1").returncode == 0
    code, rows = multi.status()
    assert code == 0 and rows[0]["consuming"] is True
    node = psutil.Process(multi.pid("w1"))
    node.suspend()  # alive, but its heartbeats stop
    try:
        def stale() -> bool:
            code, rows = multi.status()
            return code == 3 and rows[0]["state"] == "running" and rows[0]["consuming"] is False

        wait_for(stale, 20, interval=0.2, message="the heartbeat to go stale")
    finally:
        node.resume()


def test_another_executable_is_started_as_a_new_program_and_works_the_same(multi):
    python3 = str(Path(os.path.abspath(sys.executable)).with_name("python3"))
    result = multi.start("w1", "-A", "testapp", "-c", "1", f"--executable={python3}")
    assert result.returncode == 0, result.stdout
    assert multi.records()[multi.name("w1")].argv[0] == python3
    assert multi.run("stopwait").returncode == 0
    failed = multi.start("w2", "-A", "no_such_app_here", f"--executable={python3}")
    assert failed.returncode == 1 and "no_such_app_here" in failed.stdout


def test_worker_detach_alone_reports_ready_or_why_not(multi):
    files = [f"--pidfile={multi.tmp}/run/%n.pid", f"--logfile={multi.tmp}/log/%n%I.log"]
    ready = run_fleet("worker", "--detach", "-A", "testapp", "-c", "1", "-n",
                      multi.name("solo"), *files, env=multi.env)
    assert ready.returncode == 0 and f"{multi.name('solo')}: ready (pid" in ready.stdout
    pid = multi.pid("solo")
    assert alive(pid) and os.getpgid(pid) == pid and os.getsid(pid) != os.getsid(0)
    os.kill(pid, signal.SIGTERM)
    wait_for(lambda: not alive(pid), 10, message="the node to stop")
    failed = run_fleet("worker", "--detach", "-A", "no_such_app_here", "-n",
                       multi.name("bad"), *files, env=multi.env)
    assert failed.returncode == 1
    assert "did not start: exited with code 4" in failed.stderr
    assert "no_such_app_here" in failed.stderr


def test_an_unreachable_broker_is_reported_failed_with_the_nodes_own_words(multi):
    result = multi.start("w1", "-A", "testapp", "-c", "1", "-b", "redis://127.0.0.1:1/0",
                         "--", "broker_connection_max_retries=1",
                         "broker_connection_retry_delay=0.1")
    assert result.returncode == 1
    assert "FAILED" in result.stdout and "cannot reach the broker" in result.stdout
    assert "cannot reach the broker" in multi.log("w1")


def test_a_node_not_consuming_within_the_start_timeout_is_failed_and_says_so(multi):
    result = multi.start("w1", "-A", "testapp", "-c", "1", "-b", "redis://127.0.0.1:1/0",
                         "--timeout", "2.5", "--", "broker_connection_retry_delay=5")
    assert result.returncode == 1
    assert f"Waiting for 1 node(s) to consume: {multi.name('w1')}" in result.stdout
    assert "not consuming yet after the timeout" in result.stdout


def test_a_relative_workdir_and_relative_files_are_where_the_nodes_run(multi, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    (project / "myproj.py").write_text("from testapp import app\n")
    result = run_fleet("multi", "start", "w1", "-A", "myproj", "-c", "1",
                       f"--hostname={multi.host}", "--workdir", "project",
                       "--pidfile=run/%n.pid", "--logfile=log/%n%I.log", env=multi.env,
                       cwd=tmp_path)
    assert result.returncode == 0, result.stdout
    assert (project / "log" / "w1.log").exists() and (project / "log" / "w1-1.log").exists()
    pid = read_pidfile(project / "run" / "w1.pid").pid
    assert psutil.Process(pid).cwd() == str(project)
    stopped = run_fleet("multi", "stopwait", env=multi.env, cwd=Path("/"))  # from anywhere
    assert stopped.returncode == 0 and not alive(pid)


def test_start_with_no_nodes_starts_the_fleet_of_fleet_toml(multi, tmp_path):
    (tmp_path / "fleet.toml").write_text(
        'app = "testapp"\n'
        "[multi]\n"
        f'hostname = "{multi.host}"\n'
        "concurrency = 1\n"
        f'pidfile = "{tmp_path}/run/%n.pid"\n'
        f'logfile = "{tmp_path}/log/%n%I.log"\n'
        "[multi.groups.img]\n"
        "nodes = 2\n"
        'queues = ["images", "video"]\n'
    )
    shown = run_fleet("multi", "show", "--spec", env=multi.env, cwd=tmp_path).stdout.splitlines()
    assert len(shown) == 2 and "--queues=images,video" in shown[1]
    assert f"--config={tmp_path / 'fleet.toml'}" in shown[0]
    result = run_fleet("multi", "start", env=multi.env, cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.count(": OK") == 2
    assert " queues:       images, video\n" in multi.log("img2")
    assert multi.run("stopwait").returncode == 0  # remembered, from anywhere
    again = multi.run("start")  # no [multi] here: the remembered nodes
    assert again.returncode == 0 and again.stdout.count(": OK") == 2


def test_a_node_started_with_umask_and_uid_restarts_in_place_on_hup(multi):
    user = psutil.Process().username()
    assert multi.start("w1", "-A", "testapp", "-c", "1", "--umask=027",
                       f"--uid={user}").returncode == 0
    pid = multi.pid("w1")
    umask = next(line for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                 if line.startswith("Umask:"))
    assert umask.split()[1] == "0027"
    assert multi.run("reload").returncode == 0
    wait_for(lambda: multi.log("w1").count(" ready: ") == 2, 20, message="the second ready")
    assert multi.pid("w1") == pid and multi.status()[0] == 0


def test_restart_brings_every_node_back_with_its_remembered_options(multi):
    assert multi.start("2", "-A", "testapp", "-c", "1", "-Q:2", "special").returncode == 0
    before = [multi.pid("w1"), multi.pid("w2")]
    result = multi.run("restart")
    assert result.returncode == 0 and result.stdout.count(": OK") == 2, result.stdout
    after = [multi.pid("w1"), multi.pid("w2")]
    assert not set(before) & set(after) and not any(alive(pid) for pid in before)
    assert multi.log("w2").count(" queues:       special\n") == 2  # same options again
    assert multi.status()[0] == 0
