"""The floor: bare redis-py, LPUSH from one client and 2 BRPOP consumer processes."""

from __future__ import annotations

import sys
import uuid

from suite.peers.base import Peer, check_three

JOBS = "bench:bare:jobs"
DONE = "bench:bare:done"


class BarePeer(Peer):
    name = "bare"
    label = "bare redis-py (floor)"

    def __init__(self, env):
        super().__init__(env)
        self._filled = 0

    def worker_argvs(self, results: bool) -> list[list[str]]:
        script = str(self.env.apps_dir / "bare_worker.py")
        return [[sys.executable, script], [sys.executable, script]]

    def prepare(self) -> None:
        self._filled = 0

    def send_noop(self) -> None:
        self.env.redis.lpush(JOBS, b"n")

    def fill(self, count: int, results: bool) -> None:
        pipe = self.env.redis.pipeline(transaction=False)
        for index in range(count):
            pipe.lpush(JOBS, f"r{index}" if results else "n")
            if index % 1000 == 999:
                pipe.execute()
        pipe.execute()
        self._filled += count

    def outstanding(self) -> int:
        return self._filled - int(self.env.redis.get(DONE) or 0)

    def roundtrip(self) -> None:
        reply = f"bench:bare:reply:{uuid.uuid4().hex}"
        self.env.redis.lpush(JOBS, f"t{reply}")
        got = self.env.redis.brpop([reply], timeout=10)
        check_three(None if got is None else int(got[1]), self.label)

    def send_incr(self) -> None:
        self.env.redis.lpush(JOBS, b"i")
