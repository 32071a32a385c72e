"""The floor: a bare redis-py consumer, one BRPOP and one reply per message, no framework.

    BENCH_REDIS_URL=redis://127.0.0.1:PORT/0 python bare_worker.py

Messages on the list `bench:bare:jobs`: `n` (no-op: INCR bench:bare:done), `r<id>` (keep a
result: SET bench:bare:res:<id> and INCR bench:bare:done in one round trip), `t<key>` (round
trip: LPUSH the answer to <key>), `i` (INCR bench:counter, like the frameworks' incr task).
"""

from __future__ import annotations

import os

import redis

JOBS = "bench:bare:jobs"
DONE = "bench:bare:done"


def handle(client: redis.Redis, body: bytes) -> None:
    kind, rest = body[:1], body[1:].decode()
    if kind == b"n":
        client.incr(DONE)
    elif kind == b"r":
        client.pipeline(transaction=False).set(f"bench:bare:res:{rest}", 3, ex=3600).incr(
            DONE).execute()
    elif kind == b"t":
        client.lpush(rest, 3)
    elif kind == b"i":
        client.incr("bench:counter")


def main() -> None:
    client = redis.Redis.from_url(os.environ["BENCH_REDIS_URL"])
    while True:
        _, body = client.brpop([JOBS])
        handle(client, body)


if __name__ == "__main__":
    main()
