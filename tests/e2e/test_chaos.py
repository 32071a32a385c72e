"""The chaos harness's short mode (`bench/chaos --short`) on each broker: 1,000 tasks through
three nodes while one node is SIGKILLed (and restarted), one child is SIGKILLed, one node is
frozen past its heartbeat timeout, Redis is restarted on the same port and data, and the fleet
gets a rolling restart. The assertions are issue 15's targets on lost and duplicated tasks,
read from the run's JSON, and checks that remote control works at the end and that the
fleet comes through the broker restart whole (no node dies, every node answers `fleet
inspect ping`).

The harness starts its own redis-server (it must restart it), on a free port of 127.0.0.1.
Every process it starts carries CHAOS_TAG in its environment; whatever happens, the fixture
kills every process with this test's tag, by pid.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator

import psutil
import pytest

from tests.support import ROOT

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

HARNESS = ROOT / "bench" / "chaos"
RUN_TIMEOUT = 240
RESUBSCRIBE = ("after a Redis restart nodes never subscribe again (Node._resubscribe keeps a "
               "closed subscription: deaf to inspect/control), and some die (a stale selector "
               "fd: KeyError; a ConnectionError out of RedisTransport.submit)")
NO_FENCING = ("a node frozen past worker_heartbeat_timeout and declared dead keeps its "
              "prefetched and ETA tasks and runs them when it wakes, although they were "
              "recovered and ran elsewhere (no fencing)")


def _kill_tagged(tag: str) -> None:
    found = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.Error):
            if proc.environ().get("CHAOS_TAG") == tag:
                found.append(proc)
    for proc in found:
        with contextlib.suppress(psutil.Error):
            proc.send_signal(signal.SIGCONT)  # a frozen node must be able to die
            proc.kill()
    psutil.wait_procs(found, timeout=5)


@pytest.fixture(scope="module", params=["sqlite", "redis"])
def chaos(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[dict]:
    """One short chaos run on the broker; its summary and fault records."""
    broker = request.param
    if broker == "redis" and shutil.which("redis-server") is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not on PATH; CI must install it")
        pytest.skip("redis-server is not installed")
    out = tmp_path_factory.mktemp(f"chaos-{broker}")
    tag = uuid.uuid4().hex
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLEET_")}
    env["CHAOS_TAG"] = tag
    env["TMPDIR"] = str(out)
    proc = subprocess.Popen([sys.executable, str(HARNESS), "--short", "--broker", broker,
                             "--json", str(out / "chaos.json")], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    try:
        output, _ = proc.communicate(timeout=RUN_TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.terminate()  # the harness cleans up on TERM
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(15)
        _kill_tagged(tag)
    assert proc.returncode in (0, 1), f"the harness failed (exit {proc.returncode}):\n{output}"
    document = json.loads((out / "chaos.json").read_text())
    run = document["runs"][0]
    yield {"broker": broker, "summary": run["summary"], "faults": run["faults_raw"],
           "output": output}
    assert not list(out.glob("fleet-chaos-*")), "the harness left its run directory behind"


def test_every_fault_of_the_schedule_was_carried_out(chaos):
    kinds = {fault["kind"]: fault for fault in chaos["faults"] if fault["kind"] != "crash"}
    expected = {"kill_node", "kill_child", "stop_node", "rolling_restart"}
    if chaos["broker"] == "redis":
        expected.add("restart_broker")
        assert kinds["restart_broker"]["t_up"] is not None, kinds["restart_broker"]
    assert set(kinds) == expected, chaos["faults"]
    assert kinds["kill_node"]["note"].startswith("exit 0"), kinds["kill_node"]
    assert kinds["kill_child"]["t_back"] is not None, kinds["kill_child"]
    assert kinds["stop_node"]["t_dead"] is not None, "the frozen node was never declared dead"
    assert kinds["rolling_restart"]["rc"] == 0, kinds["rolling_restart"]


def test_no_task_is_lost_and_every_task_reaches_a_final_state(chaos):
    outcome = chaos["summary"]["outcome"]
    assert outcome["lost"] == 0, outcome["lost_ids"]
    assert outcome["unsettled"] == 0, outcome["unsettled_ids"]


@pytest.mark.xfail(strict=True, reason=NO_FENCING)
def test_early_acked_tasks_never_run_twice(chaos):
    dup = chaos["summary"]["duplicates"]["default_ack"]
    assert dup["extra_runs"] == 0, dup


@pytest.mark.xfail(strict=True, reason=NO_FENCING)
def test_acks_late_tasks_run_again_only_after_a_death_while_they_ran(chaos):
    dup = chaos["summary"]["duplicates"]["acks_late"]
    assert dup["unexplained"] == 0, dup


def test_every_chord_body_runs_exactly_once(chaos):
    chords = chaos["summary"]["chords"]
    assert chords["body_once"] == chords["total"], chords
    assert chords["wrong_sum"] == 0, chords


def test_no_eta_task_runs_before_its_eta(chaos):
    eta = chaos["summary"]["eta"]
    assert eta["early"] == 0, eta


@pytest.mark.xfail(strict=True, reason=NO_FENCING)
def test_every_eta_task_runs_exactly_once(chaos):
    eta = chaos["summary"]["eta"]
    assert eta["once"] == eta["total"], eta


def test_every_node_answers_remote_control_after_the_chaos(chaos):
    answered = chaos["summary"]["answered_ping"]
    assert len(answered) == 3, answered


@pytest.mark.xfail(strict=True, reason=RESUBSCRIBE)
def test_after_a_broker_restart_no_node_dies_and_every_node_answers_remote_control(chaos):
    """Redis only: SQLite has no server to restart. A node that dies for another reason (a
    child killed just before it is handed a task) fails it too; such deaths are not
    asserted alone, as they do not happen in every run (see CHAOS.md)."""
    if chaos["broker"] != "redis":
        pytest.skip("no broker server to restart on SQLite")
    restart = next(f for f in chaos["summary"]["faults"] if f["kind"] == "restart_broker")
    assert chaos["summary"]["crashes"] == [], chaos["summary"]["crashes"]
    assert len(restart["answered_ping"]) == 3, restart["answered_ping"]
