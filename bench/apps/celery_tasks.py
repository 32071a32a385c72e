"""The benchmark task set for Celery (Redis broker; results in Redis when a task keeps one)."""

from __future__ import annotations

import os

import redis
from celery import Celery

URL = os.environ["BENCH_REDIS_URL"]
app = Celery("celery_tasks", broker=URL, backend=URL)
app.conf.update(worker_hijack_root_logger=False, broker_connection_retry_on_startup=True)
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
        _counter = redis.Redis.from_url(URL)
    _counter.incr(key)
