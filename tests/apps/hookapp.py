"""An app whose every hook writes a line (JSON) to $HOOK_LOG, from whichever process it runs
in, for tests/integration/test_hooks.py; and tasks for custom states, task classes and
shadow names. The broker comes from FLEET_BROKER_URL."""

from __future__ import annotations

import json
import os
import time

from fleet import Fleet, Task, hooks

app = Fleet("hookapp")

HOOK_NAMES = ("task_received", "task_prerun", "task_postrun", "task_success", "task_failure",
              "task_retry", "task_revoked", "task_unknown", "task_rejected", "worker_init",
              "worker_process_init", "worker_ready", "worker_shutting_down",
              "worker_process_shutdown", "before_task_publish", "after_task_publish")


def _write(record: dict) -> None:
    path = os.environ.get("HOOK_LOG")
    if path:
        with open(path, "a") as out:  # one write per line: lines from processes never mix
            out.write(json.dumps(record, default=repr) + "\n")


def _record(signal=None, sender=None, **kwargs):
    detail = {}
    for key in ("task_id", "state", "result", "retval", "how", "sig", "name", "expired",
                "terminated", "exitcode"):
        if key in kwargs:
            detail[key] = kwargs[key]
    if "exception" in kwargs:
        detail["exception"] = type(kwargs["exception"]).__name__
    if "request" in kwargs:
        detail["task_id"] = kwargs["request"].id
    elif "task_id" not in detail and getattr(sender, "request", None) is not None:
        detail["task_id"] = sender.request.id  # task_success: the running task's id
    _write({"hook": signal.name, "pid": os.getpid(),
            "sender": getattr(sender, "name", sender if isinstance(sender, str) else None),
            **detail})


for _name in HOOK_NAMES:
    getattr(hooks, _name).connect(_record)


@hooks.task_prerun.connect(sender="hookapp.broken_hook")
def _broken(**_):
    raise RuntimeError("a receiver that always fails")


class Audited(Task):
    """A task class of our own: its handlers write lines too."""

    def on_success(self, retval, task_id, args, kwargs):
        _write({"hook": "on_success", "pid": os.getpid(), "task_id": task_id,
                "result": retval})

    def after_return(self, status, retval, task_id, args, kwargs, einfo):
        _write({"hook": "after_return", "pid": os.getpid(), "task_id": task_id,
                "state": status})


@app.task
def add(x, y):
    return x + y


@app.task
def fail():
    raise ValueError("fails on purpose")


@app.task(bind=True, max_retries=1, default_retry_delay=0.05)
def retry_once(self):
    if self.request.retries == 0:
        raise self.retry(exc=KeyError("first attempt"))
    return "second attempt"


@app.task
def broken_hook():
    return "ran anyway"


@app.task(base=Audited, acks_late=True)
def audited(x):
    return x * 2


@app.task
def sleep(seconds):
    time.sleep(seconds)


@app.task(bind=True)
def progress(self, steps, pause):
    for step in range(1, steps + 1):
        self.update_state(state="PROGRESS", meta={"done": step, "total": steps})
        time.sleep(pause)
    return steps


if os.environ.get("HOOK_SETUP_LOGGING"):

    @hooks.setup_logging.connect
    def _own_logging(loglevel=None, logfile=None, **_):
        """Logging set up our way: fleet's own set-up is skipped."""
        import logging

        handler = logging.FileHandler(logfile) if logfile else logging.StreamHandler()
        handler.setFormatter(logging.Formatter("OWN-FORMAT %(processName)s %(message)s"))
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(loglevel)
        _write({"hook": "setup_logging", "pid": os.getpid(), "logfile": logfile})
