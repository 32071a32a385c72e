"""The benchmark task set for Dramatiq (Redis broker, Results middleware for `add`)."""

from __future__ import annotations

import os

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker
from dramatiq.results import Results
from dramatiq.results.backends import RedisBackend

URL = os.environ["BENCH_REDIS_URL"]
broker = RedisBroker(url=URL)
backend = RedisBackend(url=URL)
broker.add_middleware(Results(backend=backend))
dramatiq.set_broker(broker)
_counter = None


@dramatiq.actor
def noop():
    return None


@dramatiq.actor(store_results=True)
def add(x, y):
    return x + y


@dramatiq.actor
def incr(key="bench:counter"):
    global _counter
    if _counter is None:
        _counter = redis.Redis.from_url(URL)
    _counter.incr(key)
