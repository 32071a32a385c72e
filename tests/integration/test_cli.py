"""The `fleet` command line against real brokers: call, result, queues, purge, report."""

from __future__ import annotations

import json

from fleet.engine.transport.base import Outgoing
from tests.support import run_fleet


def test_call_prints_an_id_and_result_prints_the_value(env, nodes):
    nodes.start()
    done = run_fleet("call", "testapp.add", "--args", "[2, 2]", "--queue", "default", env=env)
    assert done.returncode == 0, done.stderr
    task_id = done.stdout.strip()
    assert len(task_id) == 32
    shown = run_fleet("result", task_id, env=env)
    assert (shown.returncode, shown.stdout.strip()) == (0, "4")


def test_result_of_a_failed_task_exits_1_and_shows_the_traceback(env, nodes):
    nodes.start()
    task_id = run_fleet("call", "testapp.fail", "--args", '["bad day"]', env=env).stdout.strip()
    shown = run_fleet("result", task_id, env=env)
    assert shown.returncode == 1
    assert "FAILURE: ValueError: bad day" in shown.stderr
    full = run_fleet("result", task_id, "--traceback", env=env)
    assert "Traceback (most recent call last)" in full.stderr
    assert 'raise ValueError(message)' in full.stderr


def test_result_never_blocks_forever(env):
    shown = run_fleet("result", "unknown-id", "--timeout", "0.3", env=env)
    assert shown.returncode == 1
    assert "still PENDING after 0.3s" in shown.stderr


def test_queues_lists_each_queue_with_its_length(env, app):
    app.broker.put([Outgoing(f"m{i}", "alpha", "{}") for i in range(3)])
    app.broker.put([Outgoing("n", "beta", "{}", eta=2e9)])
    done = run_fleet("queues", "--json", env=env)
    rows = {row["queue"]: row for row in json.loads(done.stdout)}
    assert rows["alpha"]["ready"] == 3
    assert rows["beta"]["scheduled"] == 1
    table = run_fleet("queues", env=env).stdout
    assert table.splitlines()[0].split() == ["QUEUE", "READY", "SCHEDULED", "RESERVED",
                                             "CONSUMERS"]


def test_purge_asks_first_and_counts_what_it_removed(env, app):
    app.broker.put([Outgoing(f"m{i}", "hipri", "{}") for i in range(5)])
    app.broker.put([Outgoing("keep", "other", "{}")])
    refused = run_fleet("purge", "-Q", "hipri", env=env, input="n\n")
    assert refused.returncode == 1
    assert "hipri" in refused.stderr and "-f" in refused.stderr
    done = run_fleet("purge", "-Q", "hipri", "-f", env=env)
    assert done.returncode == 0
    assert done.stdout.strip() == "Purged 5 messages from 1 queue."
    stats = {s.name: s for s in app.broker.queue_stats()}
    assert stats["hipri"].ready == 0 and stats["other"].ready == 1
    confirmed = run_fleet("purge", "-X", "hipri", env=env, input="y\n")
    assert confirmed.stdout.strip() == "Purged 1 message from 1 queue."


def test_global_options_work_before_and_after_the_command(env, tmp_path, app):
    other = f"sqlite:///{tmp_path / 'other.db'}"
    before = run_fleet("-b", other, "queues", "--json", env=env)
    after = run_fleet("queues", "-b", other, "--json", env=env)
    assert before.returncode == after.returncode == 0
    assert json.loads(before.stdout) == json.loads(after.stdout) == []
    report = run_fleet("-A", "testapp", "report", "--json", env=env)
    assert json.loads(report.stdout)["app"]["tasks"][0].startswith("testapp.")


def test_report_masks_secrets(env):
    done = run_fleet("report", "-b", "redis://:hunter2@127.0.0.1:1/0", env=env)
    assert "hunter2" not in done.stdout
    assert "redis://:********@127.0.0.1:1/0" in done.stdout


def test_usage_errors_are_one_line_and_exit_2(env):
    for args in (["call", "testapp.add", "--args", "{"], ["worker", "--bogus"],
                 ["call", "testapp.add", "--args", '{"x": 1}']):
        done = run_fleet(*args, env=env)
        assert done.returncode == 2, args
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_unknown_setting_is_an_error_naming_the_closest_key(env):
    done = run_fleet("worker", "-A", "testapp", "--", "worker_concurency=2", env=env)
    assert done.returncode == 78
    assert "unknown setting 'worker_concurency'" in done.stderr
    assert "did you mean 'worker_concurrency'" in done.stderr
    bad_env = {**env, "FLEET_WORKER_CONCURENCY": "2"}
    done = run_fleet("queues", env=bad_env)
    assert done.returncode == 78 and "FLEET_WORKER_CONCURRENCY" in done.stderr
