"""Fixtures shared by every test: a real redis-server per test session, broker URLs,
`transport_url`, which runs a test once per transport (memory, sqlite, redis), and
`manual_clock`, a clock a test moves itself (for transports opened with `clock=`).

The redis-server listens on a free port of 127.0.0.1 (never 6379: a system Redis may be
running there) and on a unix socket, keeps nothing on disk, and is killed at the end of the
session. Under pytest-xdist every worker process starts its own.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

SYSTEM_REDIS_PORT = 6379
START_ATTEMPTS = 3
START_TIMEOUT = 10.0


@dataclass(frozen=True)
class RedisServer:
    port: int
    pid: int
    unix_socket: Path

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def unix_url(self) -> str:
        return f"unix://{self.unix_socket}?db=0"


def _free_port() -> int:
    """A port nobody listens on right now (the kernel's pick for port 0)."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port != SYSTEM_REDIS_PORT:
            return port


_PR_SET_PDEATHSIG = 1
_prctl = None
if sys.platform.startswith("linux"):
    with contextlib.suppress(OSError, AttributeError):
        _prctl = ctypes.CDLL(None, use_errno=True).prctl


def _die_with_parent() -> None:
    """In the server's child process: be SIGKILLed if the test process dies abruptly,
    so a crashed or killed test run never leaves a redis-server behind (Linux only)."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


def _answers_ping(port: int) -> bool:
    import redis

    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.2,
                         socket_timeout=0.5)
    try:
        return bool(client.ping())
    except redis.exceptions.RedisError:
        return False
    finally:
        client.close()


def _start_redis(binary: str, workdir: Path) -> tuple[subprocess.Popen, int]:
    """Start redis-server on a free port; retry if another process took the port first."""
    for _ in range(START_ATTEMPTS):
        port = _free_port()
        command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", str(workdir),
                   "--unixsocket", str(workdir / "redis.sock"), "--unixsocketperm", "700",
                   "--logfile", str(workdir / "redis.log")]
        # preexec_fn only calls prctl(2) through a function resolved before the fork.
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL,
                                   preexec_fn=_die_with_parent)  # noqa: PLW1509
        deadline = time.monotonic() + START_TIMEOUT
        while process.poll() is None and time.monotonic() < deadline:
            if _answers_ping(port):
                return process, port
            time.sleep(0.05)
        _stop(process)
    log = workdir / "redis.log"
    tail = log.read_text(errors="replace")[-2000:] if log.exists() else "(no log)"
    raise RuntimeError(f"redis-server did not start after {START_ATTEMPTS} attempts:\n{tail}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A throwaway redis-server for this test session (or this xdist worker)."""
    binary = shutil.which("redis-server")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("redis-server is not on PATH; CI must install it (apt install "
                        "redis-server) so the Redis transport is tested")
        pytest.skip("redis-server is not installed")
    workdir = tmp_path_factory.mktemp("redis")
    process, port = _start_redis(binary, workdir)
    try:
        yield RedisServer(port=port, pid=process.pid, unix_socket=workdir / "redis.sock")
    finally:
        _stop(process)


@pytest.fixture
def redis_url(redis_server: RedisServer) -> str:
    """The session's Redis, emptied before the test."""
    import redis

    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'broker.db'}"


_TRANSPORT_MODULES = {"memory": "memory", "sqlite": "sqlite", "redis": "redis"}


@pytest.fixture(params=["memory", "sqlite", "redis"])
def transport_url(request: pytest.FixtureRequest) -> str:
    """A URL for each transport in turn; a transport whose module is not written yet is
    skipped (a module that exists but fails to import still fails the test)."""
    kind = request.param
    module = f"fleet.engine.transport.{_TRANSPORT_MODULES[kind]}"
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} does not exist yet")
    if kind == "memory":
        return f"memory://test-{uuid.uuid4().hex}"
    if kind == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("redis_url")


@pytest.fixture
def manual_clock():
    """A `ManualClock` for `open_transport(url, clock=...)`: heartbeats, recovery, leases and
    etas then follow `manual_clock.advance(seconds)` instead of real time, so a test expires
    them at once and exactly. It starts on a whole second, so steps of 0.5 or 0.25 s add up
    exactly."""
    from fleet.engine.transport.clock import ManualClock

    return ManualClock(start=float(int(time.time())))


@dataclass(frozen=True)
class SystemUser:
    """An unprivileged user made for the test session: its own primary group and one
    supplementary group, so a privilege drop can be checked against both."""

    name: str
    uid: int
    gid: int
    extra_group: str
    extra_gid: int


@pytest.fixture(scope="session")
def system_user() -> Iterator[SystemUser]:
    """A real user (useradd), removed at the end of the session. Needs root: CI runs as root
    and so does every privilege test; elsewhere they are skipped."""
    import grp
    import pwd

    if os.geteuid() != 0:
        pytest.skip("needs root (CI runs as root): creates a user with useradd")
    tag = uuid.uuid4().hex[:8]
    name, extra = f"fltu{tag}", f"fltg{tag}"
    subprocess.run(["groupadd", extra], check=True, capture_output=True)
    try:
        subprocess.run(["useradd", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", "--user-group", "--groups", extra, name],
                       check=True, capture_output=True)
        try:
            entry = pwd.getpwnam(name)
            yield SystemUser(name, entry.pw_uid, entry.pw_gid, extra, grp.getgrnam(extra).gr_gid)
        finally:
            subprocess.run(["userdel", name], check=False, capture_output=True)
    finally:
        subprocess.run(["groupdel", extra], check=False, capture_output=True)


@pytest.fixture
def open_tmp() -> Iterator[Path]:
    """A root-owned 0755 directory in /tmp that any user can traverse (pytest's tmp_path sits
    under a 0700 directory, out of reach of a user a test drops to); removed afterwards."""
    import tempfile

    directory = Path(tempfile.mkdtemp(prefix="fleet-test-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
