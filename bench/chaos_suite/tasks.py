"""The app the chaos fleet runs (`fleet worker -A chaos_suite.tasks`, broker from
$FLEET_BROKER_URL). Every task writes a ledger line when it starts and when it finishes.

    chaos.short   returns at once                       default ack (acked when it starts)
    chaos.slow    sleeps 0.2 s                          default ack
    chaos.late    sleeps 0.05 s                         acks_late
    chaos.eta     returns at once; sent with a countdown default ack; every other one is
                                                        sent with acks_late=True
    chaos.part    a chord header member (chords of 20)  acks_late, reject_on_worker_lost
    chaos.join    the chord body: sums the header       acks_late, reject_on_worker_lost
    chaos.flaky   retries itself `fails` times first    default ack

Chord members and bodies are acks-late and rejected on worker loss, so a chord can survive
a node or child dying under it: an early-acked member that dies is reported failed and
fails its chord, which is the documented at-most-once behaviour, not what this harness
probes.
"""

from __future__ import annotations

import os
import time

from chaos_suite import ledger
from fleet import Fleet

app = Fleet("chaos")

#: How long `flaky` waits before each retry (seconds).
RETRY_COUNTDOWN = 0.3
SLOW_SECONDS = 0.2
LATE_SECONDS = 0.05


def _record(event: str, request, name: str, **extra) -> None:
    if event == "start" and request.eta is not None:
        extra["eta"] = request.eta
    ledger.append({"ev": event, "id": request.id, "try": request.retries, "task": name,
                   "node": request.hostname, "pid": os.getpid(), "ppid": os.getppid(),
                   "t": time.time(), **extra})


def _run(task, seconds: float, value):
    _record("start", task.request, task.name)
    if seconds:
        time.sleep(seconds)
    _record("end", task.request, task.name, out="ok")
    return value


@app.task(bind=True, name="chaos.short")
def short(self, i):
    return _run(self, 0.0, i)


@app.task(bind=True, name="chaos.slow")
def slow(self, i):
    return _run(self, SLOW_SECONDS, i)


@app.task(bind=True, name="chaos.late", acks_late=True)
def late(self, i):
    return _run(self, LATE_SECONDS, i)


@app.task(bind=True, name="chaos.eta")
def eta(self, i):
    return _run(self, 0.0, i)


@app.task(bind=True, name="chaos.part", acks_late=True, reject_on_worker_lost=True)
def part(self, chord_no, i):
    return _run(self, 0.0, i)


@app.task(bind=True, name="chaos.join", acks_late=True, reject_on_worker_lost=True)
def join(self, results, chord_no):
    _record("start", self.request, self.name, n=len(results))
    total = sum(results)
    _record("end", self.request, self.name, out="ok", n=len(results))
    return total


@app.task(bind=True, name="chaos.flaky", max_retries=5)
def flaky(self, i, fails):
    _record("start", self.request, self.name)
    if self.request.retries < fails:
        _record("end", self.request, self.name, out="retry")
        raise self.retry(countdown=RETRY_COUNTDOWN)
    _record("end", self.request, self.name, out="ok")
    return i
