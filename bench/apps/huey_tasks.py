"""The benchmark task set for Huey (RedisHuey; it stores a result only when one is returned)."""

from __future__ import annotations

import os

import redis
from huey import RedisHuey

URL = os.environ["BENCH_REDIS_URL"]
# notify_result: get() waits on a notification instead of polling (Huey 2.5+)
huey = RedisHuey("bench", url=URL, notify_result=True)
_counter = None


@huey.task()
def noop():
    return None


@huey.task()
def add(x, y):
    return x + y


@huey.task()
def incr(key="bench:counter"):
    global _counter
    if _counter is None:
        _counter = redis.Redis.from_url(URL)
    _counter.incr(key)
