"""fleet.hooks in real nodes, on both brokers (issue 17): each hook runs in the process
Celery runs it in (the node's main process, or the child that runs the task), a failing
receiver fails nothing, a task class's handlers run, and setup_logging replaces fleet's own
logging set-up."""

from __future__ import annotations

import json
import signal

import pytest

from tests.support import wait_for


@pytest.fixture
def hook_log(tmp_path):
    path = tmp_path / "hooks.jsonl"

    def lines() -> list[dict]:
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line]

    lines.path = path
    return lines


@pytest.fixture
def hookapp(broker_url):
    import hookapp

    hookapp.app.conf.update(broker_url=broker_url)
    hookapp.app.close()
    yield hookapp
    hookapp.app.close()


def _by_hook(records: list[dict]) -> dict[str, list[dict]]:
    found: dict[str, list[dict]] = {}
    for record in records:
        found.setdefault(record["hook"], []).append(record)
    return found


def test_hooks_run_where_celery_runs_them_and_a_failing_one_fails_nothing(hookapp, nodes,
                                                                          hook_log):
    node = nodes.start(app="hookapp", env={"HOOK_LOG": str(hook_log.path)})
    added = hookapp.add.delay(2, 2)
    failed = hookapp.fail.delay()
    retried = hookapp.retry_once.delay()
    broken = hookapp.broken_hook.delay()
    audited = hookapp.audited.delay(21)
    assert added.get(timeout=10) == 4 and retried.get(timeout=10) == "second attempt"
    assert broken.get(timeout=10) == "ran anyway" and audited.get(timeout=10) == 42
    with pytest.raises(ValueError):
        failed.get(timeout=10)
    unknown = hookapp.app.send_task("hookapp.not_here")
    later = hookapp.add.apply_async((1, 1), countdown=60)
    wait_for(lambda: f"{later.id}] received" in node.log_text(), message="the ETA task")
    hookapp.app.control.revoke(later.id)
    wait_for(lambda: any(r["hook"] == "task_revoked" for r in hook_log()), 10,
             message="task_revoked")
    node.signal(signal.SIGTERM)
    assert node.wait() == 0

    main, hooks = node.pid, _by_hook(hook_log())
    children = {r["pid"] for r in hooks["worker_process_init"]}
    assert len(children) == 2 and main not in children
    for name in ("worker_init", "worker_ready", "task_received", "task_unknown",
                 "task_revoked", "worker_shutting_down"):
        assert {r["pid"] for r in hooks[name]} == {main}, name
    for name in ("task_prerun", "task_postrun", "task_success", "task_failure", "task_retry",
                 "on_success", "after_return"):
        assert {r["pid"] for r in hooks[name]} <= children, name
    assert {r["pid"] for r in hooks["worker_process_shutdown"]} == children
    assert [r["hook"] for r in hook_log() if r.get("task_id") == added.id and
            r["hook"].startswith("task_")] == ["task_received", "task_prerun", "task_success",
                                               "task_postrun"]
    assert [r["exception"] for r in hooks["task_failure"]] == ["ValueError"]
    assert [r["task_id"] for r in hooks["task_retry"]] == [retried.id]
    assert hooks["task_unknown"][0]["name"] == "hookapp.not_here" and unknown.id
    assert hooks["task_revoked"][0]["task_id"] == later.id
    assert hooks["task_revoked"][0]["expired"] is False
    assert hooks["on_success"][0]["result"] == 42
    assert hooks["worker_shutting_down"][0] | {"pid": 0} == {
        "hook": "worker_shutting_down", "pid": 0, "sender": node.log_text().split(
            "node:")[1].split()[0], "sig": "SIGTERM", "how": "Warm", "exitcode": 0}
    assert "hooks.task_prerun: receiver" in node.log_text()  # logged in the child's log
    assert "a receiver that always fails" in node.log_text()


def test_setup_logging_replaces_fleets_logging_in_every_process(hookapp, nodes, hook_log,
                                                                tmp_path):
    node = nodes.start(app="hookapp", concurrency=1,
                       env={"HOOK_LOG": str(hook_log.path), "HOOK_SETUP_LOGGING": "1"})
    assert hookapp.add.delay(1, 2).get(timeout=10) == 3
    calls = _by_hook(hook_log())["setup_logging"]
    assert {r["pid"] for r in calls} >= {node.pid} and len(calls) == 2  # main and child
    text = node.log_text()
    assert "OWN-FORMAT" in text and " ready: consuming" in text
    assert "INFO/" not in text  # fleet's own format is not used
