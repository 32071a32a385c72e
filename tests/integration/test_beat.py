"""Periodic tasks with real `fleet beat` processes and real nodes, on both brokers."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from fleet.engine.beat import LAST_PREFIX
from fleet.engine.transport.base import StoredResult
from fleet.operator_errors import EXIT_CONFIG
from tests.support import APPS, fleet_env, run_fleet, wait_for

LEASE = "1"  # seconds: a standby takes over about a second after the leader died


def schedule_env(ticks: Path, every: float = 1.0, name: str = "ticker") -> dict[str, str]:
    entry = {"task": "testapp.tick", "schedule": every, "args": [str(ticks), name]}
    return {"FLEET_BEAT_SCHEDULE": json.dumps({name: entry}),
            "FLEET_BEAT_LEASE_SECONDS": LEASE, "FLEET_BEAT_MAX_LOOP_INTERVAL": "0.1"}


def tick_times(ticks: Path) -> list[float]:
    if not ticks.exists():
        return []
    return [float(line.split()[0]) for line in ticks.read_text().splitlines()]


@dataclass
class BeatProcess:
    proc: subprocess.Popen
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def sent(self) -> int:
        return self.log_text().count("Beat: sent ")

    def sent_times(self) -> list[float]:
        """When each dispatch was logged (epoch seconds, from the log line's timestamp)."""
        from datetime import datetime

        return [datetime.strptime(line[1:24], "%Y-%m-%d %H:%M:%S,%f").timestamp()
                for line in self.log_text().splitlines() if "Beat: sent " in line]

    def leads(self) -> bool:
        return "is the leader now" in self.log_text()

    def wait_started(self) -> None:
        wait_for(lambda: "starting:" in self.log_text() or self.proc.poll() is not None, 20,
                 message="beat to start")
        assert self.proc.poll() is None, self.log.with_suffix(".err").read_text()

    def kill(self, signum: int = signal.SIGKILL) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signum)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(5)


@dataclass
class Beats:
    broker_url: str
    workdir: Path
    started: list[BeatProcess] = field(default_factory=list)

    def start(self, env: dict[str, str], *args: str, wait: bool = True) -> BeatProcess:
        log = self.workdir / f"beat-{len(self.started)}.log"
        environment = fleet_env(self.broker_url, **env)
        with open(log.with_suffix(".err"), "w") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "fleet", "beat", "-A", "testapp", "-l", "info",
                 "--logfile", str(log), *args],
                cwd=APPS, env=environment, start_new_session=True,
                stdout=subprocess.DEVNULL, stderr=stderr)
        beat = BeatProcess(proc, log)
        self.started.append(beat)
        if wait:
            beat.wait_started()
        return beat


@pytest.fixture
def beats(broker_url: str, tmp_path: Path) -> Iterator[Beats]:
    factory = Beats(broker_url, tmp_path)
    try:
        yield factory
    finally:
        for beat in factory.started:
            beat.kill()


def test_a_1s_interval_runs_about_once_per_second_with_a_log_line_each(app, nodes, beats,
                                                                       tmp_path):
    ticks = tmp_path / "ticks"
    nodes.start()
    beat = beats.start(schedule_env(ticks))
    wait_for(lambda: len(tick_times(ticks)) >= 4, 20, message="4 ticks")
    beat.kill(signal.SIGTERM)
    wait_for(lambda: len(tick_times(ticks)) == beat.sent(), 10, message="every sent task ran")
    assert beat.log_text().count("Beat: sent ticker (testapp.tick) as task ") == beat.sent()
    sent = beat.sent_times()
    gaps = [later - earlier for earlier, later in itertools.pairwise(sent)]
    assert min(gaps) > 0.5, gaps  # never twice for one run (a send may take a while)
    assert sum(gaps) / len(gaps) < 2.0, gaps  # and about every second


def test_two_beats_started_together_send_each_run_once(app, nodes, beats, tmp_path):
    ticks = tmp_path / "ticks"
    nodes.start()
    env = {**schedule_env(ticks), "FLEET_BEAT_LEASE_SECONDS": "3"}  # no handover if busy
    both = [beats.start(env, wait=False) for _ in range(2)]
    for beat in both:
        beat.wait_started()
    first, second = both
    wait_for(lambda: len(tick_times(ticks)) >= 4, 20, message="4 ticks")
    assert [first.leads(), second.leads()].count(True) == 1
    for beat in both:  # TERM both at once: the lease must not pass to the other one
        os.killpg(beat.proc.pid, signal.SIGTERM)
    for beat in both:
        beat.proc.wait(10)
    wait_for(lambda: len(tick_times(ticks)) == first.sent() + second.sent(), 10,
             message="every sent task ran")
    sent = sorted(first.sent_times() + second.sent_times())
    assert all(later - earlier > 0.5 for earlier, later in itertools.pairwise(sent)), sent


def test_the_standby_takes_over_when_the_leader_is_killed(app, nodes, beats, tmp_path):
    ticks = tmp_path / "ticks"
    nodes.start()
    leader = beats.start(schedule_env(ticks))
    wait_for(leader.leads, 10, message="the first beat to lead")
    standby = beats.start(schedule_env(ticks))
    wait_for(lambda: "standing by" in standby.log_text(), 10, message="a standby")
    wait_for(lambda: len(tick_times(ticks)) >= 2, 20, message="ticks from the leader")
    leader.kill(signal.SIGKILL)
    killed_at = time.time()
    wait_for(standby.leads, 10, message="the standby to take over")
    took = time.time() - killed_at
    assert took < 4 * float(LEASE) + 1, took  # one lease, and room for a busy machine
    wait_for(lambda: standby.sent() >= 2, 20, message="the standby to send")
    assert "standing by" in standby.log_text().split("is the leader now")[0]


def test_a_restarted_beat_neither_resends_nor_skips(app, nodes, beats, tmp_path):
    ticks = tmp_path / "ticks"
    nodes.start()
    env = schedule_env(ticks, every=3600, name="hourly")
    first = beats.start(env)
    wait_for(lambda: len(tick_times(ticks)) == 1, 20, message="the first run")
    first.kill(signal.SIGTERM)
    again = beats.start(env)
    wait_for(again.leads, 10, message="the restarted beat to lead")
    time.sleep(0.5)  # five of its loop turns: it must not send the hourly entry again
    again.kill(signal.SIGTERM)
    assert again.sent() == 0
    record = json.loads(app.broker.get_value(LAST_PREFIX + "hourly"))
    record["at"] -= 3 * 3600  # as if beat had been down for three runs
    app.broker.set_values([StoredResult(LAST_PREFIX + "hourly", json.dumps(record))])
    late = beats.start(env)
    wait_for(lambda: len(tick_times(ticks)) == 2, 20, message="the missed run")
    time.sleep(0.5)
    late.kill(signal.SIGTERM)
    assert late.sent() == 1 and len(tick_times(ticks)) == 2


def test_worker_with_embedded_beat_sends_periodic_tasks(app, nodes, tmp_path):
    ticks = tmp_path / "ticks"
    node = nodes.start("-B", env=schedule_env(ticks))
    wait_for(lambda: len(tick_times(ticks)) >= 3, 20, message="3 ticks from -B")
    assert "is the leader now" in node.log_text() and "Beat: sent ticker" in node.log_text()
    node.signal(signal.SIGTERM)
    assert node.wait() == 0


def test_beat_list_shows_schedule_and_next_run(app, env, tmp_path):
    entries = {"ticker": {"task": "testapp.tick", "schedule": 30, "args": ["x"]},
               "nightly": {"task": "testapp.add", "schedule": {"crontab": {"minute": "0",
                                                                          "hour": "3"}}}}
    env = {**env, "FLEET_BEAT_SCHEDULE": json.dumps(entries)}
    table = run_fleet("beat", "-A", "testapp", "--list", env=env)
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["NAME", "TASK", "SCHEDULE"]
    assert "crontab(0 3 * * *) UTC" in lines[1] and lines[1].startswith("nightly")
    assert "every 30s" in lines[2]
    listed = run_fleet("beat", "-A", "testapp", "--list", "--json", env=env)
    rows = {row["name"]: row for row in json.loads(listed.stdout)}
    assert rows["nightly"]["next_run"].endswith("T03:00:00+00:00")
    assert rows["ticker"]["schedule"] == "every 30s" and rows["ticker"]["last_run"] is None


def test_a_wrong_beat_entry_is_one_clear_line(app, env):
    env = {**env, "FLEET_BEAT_SCHEDULE": json.dumps({"bad": {"task": "t", "schedul": 5}})}
    result = run_fleet("beat", "-A", "testapp", "--list", env=env)
    assert result.returncode == EXIT_CONFIG, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "beat_schedule['bad']: unknown key 'schedul'" in result.stderr
    assert "did you mean 'schedule'" in result.stderr


def test_entries_from_fleet_toml_are_listed(app, env, tmp_path):
    config = tmp_path / "fleet.toml"
    config.write_text('app = "testapp"\n\n[beat.schedule.every-minute]\ntask = "testapp.tick"\n'
                      'schedule = { every = 60 }\nargs = ["x"]\noptions = { queue = "q" }\n')
    listed = run_fleet("beat", "--config", str(config), "--list", "--json", env=env)
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert row["name"] == "every-minute" and row["schedule"] == "every 1m"
    assert row["args"] == ["x"] and row["options"] == {"queue": "q"}
