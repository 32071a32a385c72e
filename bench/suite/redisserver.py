"""The suite's private redis-server: a free loopback port (never 6379), nothing on disk."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import redis

from suite import procs

SYSTEM_REDIS_PORT = 6379


@dataclass
class RedisServer:
    proc: subprocess.Popen
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port)

    def version(self) -> str:
        return str(self.client().info("server").get("redis_version", "?"))


def free_port() -> int:
    """A port nobody listens on right now (the kernel's pick), never the system Redis port."""
    while True:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port != SYSTEM_REDIS_PORT:
            return port


def start(workdir: Path, env: dict[str, str]) -> RedisServer:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("bench: redis-server not found; install it (apt-get install -y "
                         "redis-server) and run bench/run again")
    port = free_port()
    argv = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", str(workdir), "--protected-mode", "yes"]
    proc = procs.spawn(argv, env, workdir, workdir / "redis-server.log",
                        role="server")
    server = RedisServer(proc, port)
    deadline = time.monotonic() + 10
    while True:
        try:
            server.client().ping()
            return server
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                log = (workdir / "redis-server.log").read_text(errors="replace")[-2000:]
                raise SystemExit(
                    f"bench: redis-server did not start on port {port}:\n{log}") from None
            time.sleep(0.02)
