"""The benchmark task set for RQ (plain functions; the caller chooses result_ttl)."""

from __future__ import annotations

import os

import redis

_counter = None


def noop():
    return None


def add(x, y):
    return x + y


def incr(key="bench:counter"):
    global _counter
    if _counter is None:
        _counter = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    _counter.incr(key)
