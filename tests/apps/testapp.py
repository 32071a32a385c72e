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


# -- execution semantics: limits, retries, ETA, rate limits (issue 8) ---------------------------

def _fail_boot_if_asked() -> None:
    """In a new pool child: die at once while the file named by TESTAPP_FAIL_BOOT exists, so
    tests can make replacement children fail to come up."""
    flag = os.environ.get("TESTAPP_FAIL_BOOT")
    if flag and os.path.exists(flag):
        os._exit(3)
    hang = os.environ.get("TESTAPP_HANG_BOOT")
    if hang and os.path.exists(hang):
        time.sleep(60)  # never reports ready


os.register_at_fork(after_in_child=_fail_boot_if_asked)

_hoard: list[bytearray] = []


@app.task
def spin(marker=None):
    """`while True: pass`, after starting a grandchild (`sleep`) whose pid goes to `marker`."""
    if marker:
        import subprocess

        helper = subprocess.Popen(["sleep", "60"])
        Path(marker).write_text(f"{os.getpid()} {helper.pid}")
    while True:
        pass


@app.task(soft_time_limit=0.3)
def catch_soft():
    """Catches its soft time limit and finishes normally."""
    from fleet.exceptions import SoftTimeLimitExceeded

    try:
        while True:
            time.sleep(0.01)
    except SoftTimeLimitExceeded:
        return "caught"


@app.task
def hog(kib):
    """Keep `kib` KiB allocated (and touched) in this child; return its pid."""
    _hoard.append(bytearray(b"x" * (kib * 1024)))
    return os.getpid()


@app.task
def stamp(marker=None):
    """Return when it ran (epoch seconds); append 'pid time' to `marker` for run counting."""
    now = time.time()
    if marker:
        with open(marker, "a") as runs:
            runs.write(f"{os.getpid()} {now}\n")
    return now


@app.task(rate_limit="5/s")
def limited(x):
    return time.time()


@app.task(bind=True, autoretry_for=(CustomError,), retry_backoff=0.1, retry_backoff_max=0.3,
          retry_jitter=False, max_retries=4)
def auto_flaky(self, failures):
    """Raise CustomError until it has been retried `failures` times (automatic retries)."""
    if self.request.retries < failures:
        raise CustomError(f"attempt {self.request.retries + 1}")
    return self.request.retries


@app.task(bind=True, max_retries=2, default_retry_delay=0.05)
def retry_forever(self, with_exc=True):
    raise self.retry(exc=CustomError("still broken") if with_exc else None)


@app.task(bind=True)
def request_info(self, *args, **kwargs):
    request = self.request
    return {"id": request.id, "retries": request.retries, "args": request.args,
            "kwargs": request.kwargs, "hostname": request.hostname, "eta": request.eta,
            "delivery_info": request.delivery_info}


@app.task
def block(gate, marker=None, timeout=30.0):
    """Run until the file `gate` exists (a long task the test ends when it wants)."""
    if marker:
        Path(marker).write_text(str(os.getpid()))
    deadline = time.monotonic() + timeout
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.01)
    return os.getpid()


@app.task(acks_late=True, reject_on_worker_lost=True)
def late_reject_sleep(seconds, marker=None):
    if marker:
        with open(marker + ".runs", "a") as runs:
            runs.write(f"{os.getpid()}\n")
    time.sleep(seconds)
    return seconds


@app.task(bind=True, max_retries=3)
def retry_later(self, times, countdown):
    """Retry `times` times, each `countdown` seconds later; return the retries seen."""
    if self.request.retries < times:
        raise self.retry(exc=CustomError("not yet"), countdown=countdown)
    return self.request.retries


@app.task
def segfault():
    """Die the way a crashing C extension does."""
    import signal

    os.kill(os.getpid(), signal.SIGSEGV)


@app.task(time_limit=0.3)
def over_its_own_limit():
    while True:
        pass


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


@app.task(bind=True)
def progress(self, steps, pause):
    """Reports its progress as a state of its own (update_state), then returns `steps`."""
    for step in range(1, steps + 1):
        self.update_state(state="PROGRESS", meta={"done": step, "total": steps})
        time.sleep(pause)
    return steps


@app.task(soft_time_limit=0.2)
def outlive_soft_limit(seconds):
    """Catches its soft time limit, then goes on for `seconds` more."""
    from fleet.exceptions import SoftTimeLimitExceeded

    try:
        while True:
            time.sleep(0.01)
    except SoftTimeLimitExceeded:
        time.sleep(seconds)
        return "caught"
