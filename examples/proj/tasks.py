"""Example tasks. The app uses the embedded SQLite broker unless FLEET_BROKER_URL (or -b on
the command line) points elsewhere, e.g. FLEET_BROKER_URL=redis://127.0.0.1:6379/0."""

import time

from fleet import Fleet

app = Fleet("proj")
app.conf.update(task_routes={"proj.tasks.resize_*": "images"})


@app.task
def add(x, y):
    return x + y


@app.task
def mul(x, y):
    return x * y


@app.task
def xsum(numbers):
    return sum(numbers)


@app.task
def fail(message="this task always fails"):
    raise ValueError(message)


@app.task
def sleep(seconds):
    time.sleep(seconds)
    return seconds


@app.task(bind=True, max_retries=3, default_retry_delay=0.1)
def flaky(self, failures):
    """Fails `failures` times, then succeeds: shows retries."""
    if self.request.retries < failures:
        raise self.retry(exc=RuntimeError(f"attempt {self.request.retries + 1} failed"))
    return self.request.retries


@app.task
def resize_image(name):
    return f"resized {name}"
