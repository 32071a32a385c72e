"""The app the integration tests run nodes with (`fleet worker -A testapp`, cwd tests/apps).

The broker comes from FLEET_BROKER_URL in the node's environment; in the test process the
fixtures point `app` at the same broker.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from fleet import Fleet

app = Fleet("testapp")
app.conf.update(task_routes={"testapp.route_*": "routed"})


class CustomError(Exception):
    """An exception type the test process can import too."""


@app.task
def add(x, y):
    return x + y


@app.task
def echo(*args, **kwargs):
    return {"args": list(args), "kwargs": kwargs}


@app.task
def fail(message="boom"):
    raise ValueError(message)


@app.task
def fail_custom(message="custom"):
    raise CustomError(message)


@app.task
def unencodable():
    return {1, 2, 3}


@app.task
def sleep(seconds, marker=None):
    """Sleep, then (optionally) create `marker` so tests can see the task finished."""
    if marker:
        Path(marker + ".started").write_text(str(os.getpid()))
    time.sleep(seconds)
    if marker:
        Path(marker).write_text(str(os.getpid()))
    return seconds


@app.task(acks_late=True)
def late_sleep(seconds, marker=None):
    if marker:
        with open(marker + ".runs", "a") as runs:
            runs.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    return seconds


@app.task(ignore_result=True)
def quiet(x):
    return x


@app.task
def route_me(x):
    return x


@app.task(queue="pinned")
def pinned(x):
    return x


@app.task(bind=True, max_retries=5, default_retry_delay=0.05)
def flaky(self, failures):
    if self.request.retries < failures:
        raise self.retry(exc=RuntimeError(f"attempt {self.request.retries + 1}"))
    return self.request.retries


@app.task(bind=True)
def whoami(self):
    return {"id": self.request.id, "hostname": self.request.hostname,
            "queue": self.request.delivery_info.get("queue"), "pid": os.getpid()}


@app.task
def spawn_orphan(seconds):
    """Leave a grandchild behind (it outlives its parent): in a container it is reparented
    to PID 1, which must reap it when it exits."""
    import subprocess

    return subprocess.run(["sh", "-c", f"sleep {seconds} & echo $!"], capture_output=True,
                          text=True, check=True).stdout.strip()


# -- canvas (workflows) -------------------------------------------------------------------------

@app.task
def mul(x, y):
    return x * y


@app.task
def xsum(numbers):
    return sum(numbers)


@app.task
def identity(value):
    return value


@app.task
def errback_record(task_id, error, *extra):
    """An errback: returns what it was told, so tests can read it from its result."""
    return {"task_id": task_id, "exc_type": error["exc_type"], "exc_message": error["exc_message"],
            "task": error["task"], "extra": list(extra)}


@app.task
def fail_if(value, bad):
    """Return `value`, or fail when it equals `bad` (a failing chord header member)."""
    if value == bad:
        raise ValueError(f"bad value {value}")
    return value


@app.task
def hard_limited(seconds):
    time.sleep(seconds)
    return seconds


# -- beat ---------------------------------------------------------------------------------------

@app.task
def tick(path, label="tick"):
    """Append one line (time and label) to `path`: beat tests count the lines."""
    with open(path, "a") as out:
        out.write(f"{time.time():.3f} {label} {os.getpid()}\n")
    return label


# -- workflow follow-ups when the result store fails ----------------------------------------------

@app.task
def store_trouble(value, method, times=1, fail=False):
    """Return `value` (or raise ValueError with `fail`), after making this child's result store
    raise a transient error on its next `times` calls of `method` (set_values, add_value,
    incr, ...): what follows the task in its workflow then meets a broker error."""
    store = app.result_store
    real = getattr(type(store), method)
    left = [times]

    def broken(*args, **kwargs):
        if left[0] > 0:
            left[0] -= 1
            raise type(store).transient_errors[0]("injected: the result store is down")
        return real(store, *args, **kwargs)

    setattr(store, method, broken)
    if fail:
        raise ValueError(f"store_trouble failed on purpose with {value!r}")
    return value
