"""The benchmark task set for fleet: noop, add, incr (broker from FLEET_BROKER_URL).

Every framework's app in this folder defines the same three tasks with the same settings:
`noop` stores no result, `add` stores one, `incr` bumps a Redis counter so the harness can
see that a node is consuming without reading any framework's internals. fleet's also has
`sleep`, for bench/idle_cpu.py's measurement while a long task runs.
"""

from __future__ import annotations

import os
import time

import redis

from fleet import Fleet

app = Fleet("fleet_tasks")
_counter = None


@app.task(ignore_result=True)
def noop():
    return None


@app.task
def add(x, y):
    return x + y


@app.task(ignore_result=True)
def incr(key="bench:counter"):
    global _counter
    if _counter is None:
        _counter = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    _counter.incr(key)


@app.task
def sleep(seconds):
    time.sleep(seconds)
    return seconds
