"""fleet.hooks: connecting receivers (with and without a sender), sending, failing receivers,
and the publish hooks a client sends (memory broker)."""

from __future__ import annotations

import gc
import logging

import pytest

from fleet import group, hooks
from fleet.engine.hooks import HOOKS, Hook
from tests.unit.engine.support import make_app, sent


@pytest.fixture
def hook():
    return Hook("test_hook", "a test", "sender; value")


def test_every_celery_signal_of_issue_17_is_a_hook_with_its_name():
    names = ["before_task_publish", "after_task_publish", "task_received", "task_prerun",
             "task_postrun", "task_success", "task_failure", "task_retry", "task_revoked",
             "task_rejected", "task_unknown", "worker_init", "worker_process_init",
             "worker_ready", "worker_shutting_down", "worker_process_shutdown", "beat_init",
             "setup_logging"]
    for name in names:
        hook = getattr(hooks, name)
        assert isinstance(hook, Hook) and hook.name == name and name in HOOKS
        assert "Runs in" in hook.__doc__


def test_receivers_get_the_signal_the_sender_and_the_arguments_as_keywords(hook):
    seen = []

    @hook.connect
    def receiver(**kwargs):
        seen.append(kwargs)
        return "answer"

    assert receiver.__name__ == "receiver"  # the decorator returns the function itself
    assert hook.send(sender="s", value=1) == [(receiver, "answer")]
    assert seen == [{"signal": hook, "sender": "s", "value": 1}]


def test_a_receiver_with_a_sender_runs_only_for_that_sender_or_a_task_of_that_name(hook):
    seen = []

    class FakeTask:
        name = "proj.add"

    task = FakeTask()
    hook.connect(lambda sender, **_: seen.append(("name", sender)), sender="proj.add")
    hook.connect(lambda sender, **_: seen.append(("object", sender)), sender=task)
    hook.send(sender=task)
    hook.send(sender="proj.add")
    hook.send(sender="proj.other")
    assert seen == [("name", task), ("object", task), ("name", "proj.add")]


def test_connecting_twice_connects_once_and_disconnect_removes(hook):
    calls = []

    def receiver(**_):
        calls.append(1)

    hook.connect(receiver)
    hook.connect(receiver)
    hook.connect(lambda **_: calls.append(2), dispatch_uid="uid")
    hook.connect(lambda **_: calls.append(3), dispatch_uid="uid")  # same uid: ignored
    hook.send()
    assert calls == [1, 2]
    assert hook.disconnect(receiver) and hook.disconnect(dispatch_uid="uid")
    assert not hook.disconnect(receiver)
    assert hook.receivers == ()


def test_a_failing_receiver_is_logged_and_the_others_still_run(hook, caplog):
    seen = []

    @hook.connect
    def broken(**_):
        raise RuntimeError("boom")

    hook.connect(lambda **_: seen.append("after"))
    with caplog.at_level(logging.ERROR, logger="fleet.hooks"):
        responses = hook.send(sender=None)
    assert seen == ["after"]
    assert isinstance(responses[0][1], RuntimeError)
    assert "hooks.test_hook: receiver" in caplog.text and "boom" in caplog.text


def test_a_weak_receiver_goes_away_with_its_object(hook):
    seen = []

    class Listener:
        def on(self, **_):
            seen.append(self)

    listener = Listener()
    hook.connect(listener.on, weak=True)
    hook.send()
    assert seen == [listener]
    del listener, seen[:]
    gc.collect()
    hook.send()
    assert seen == [] and hook.receivers == ()


def test_publish_hooks_see_the_message_and_may_change_its_headers():
    app = make_app()
    seen = []

    def before(sender, body, headers, routing_key, **_):
        seen.append(("before", sender, body["id"], routing_key))
        headers["traced"] = "yes"

    def after(sender, body, **_):
        seen.append(("after", sender, body["id"]))

    hooks.before_task_publish.connect(before)
    hooks.after_task_publish.connect(after)
    try:
        result = app.tasks["t.add"].delay(1, 2)
        add, mul = app.tasks["t.add"], app.tasks["t.mul"]
        group_ids = [r.id for r in group(add.s(1, 1), mul.s(2, 2)).delay()]
    finally:
        hooks.before_task_publish.disconnect(before)
        hooks.after_task_publish.disconnect(after)
    assert seen[:2] == [("before", "t.add", result.id, "default"), ("after", "t.add", result.id)]
    assert [entry[2] for entry in seen[2:]] == group_ids * 2  # a workflow's messages too
    assert all(msg.headers == {"traced": "yes"} for msg in sent(app))
