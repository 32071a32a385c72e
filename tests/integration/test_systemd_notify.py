"""The sd_notify protocol, against a real NOTIFY_SOCKET datagram socket opened by the test
(what systemd does for a Type=notify unit)."""

from __future__ import annotations

import signal
import socket
import time
from collections.abc import Iterator

import pytest

from fleet.daemon import sd_notify


class NotifySocket:
    def __init__(self, path: str):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.messages: list[str] = []

    def wait_for(self, needle: str, timeout: float = 15.0) -> str:
        deadline = time.monotonic() + timeout
        for message in self.messages:
            if needle in message:
                return message
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                message = self.sock.recv(4096).decode()
            except TimeoutError:
                break
            self.messages.append(message)
            if needle in message:
                return message
        raise AssertionError(f"no {needle!r} from the node; got {self.messages}")


@pytest.fixture
def notify_socket(tmp_path) -> Iterator[NotifySocket]:
    listener = NotifySocket(str(tmp_path / "notify.sock"))
    yield listener
    listener.sock.close()


def fields(message: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in message.splitlines() if "=" in line)


def test_ready_status_and_stopping_reach_systemd(nodes, notify_socket):
    node = nodes.start(env={"NOTIFY_SOCKET": notify_socket.path})
    ready = fields(notify_socket.wait_for("READY=1"))
    assert ready["MAINPID"] == str(node.pid)
    assert ready["STATUS"].startswith("Consuming default with 2 children")
    notify_socket.wait_for("STATUS=Consuming")  # heartbeats keep the status current
    node.signal(signal.SIGTERM)
    stopping = fields(notify_socket.wait_for("STOPPING=1"))
    assert stopping["STATUS"].startswith("Warm shutdown")
    assert node.wait(15) == 0


def test_hup_says_reloading_then_ready_again(nodes, notify_socket):
    node = nodes.start(env={"NOTIFY_SOCKET": notify_socket.path})
    notify_socket.wait_for("READY=1")
    notify_socket.messages.clear()
    node.signal(signal.SIGHUP)
    reloading = fields(notify_socket.wait_for("RELOADING=1"))
    assert int(reloading["MONOTONIC_USEC"]) > 0
    again = fields(notify_socket.wait_for("READY=1"))
    assert again["MAINPID"] == str(node.pid)  # restarted in place


def test_watchdog_pings_come_from_the_main_loop(nodes, notify_socket):
    nodes.start(env={"NOTIFY_SOCKET": notify_socket.path, "WATCHDOG_USEC": "200000"})
    notify_socket.wait_for("READY=1")
    notify_socket.messages.clear()
    notify_socket.wait_for("WATCHDOG=1", timeout=2)


def test_sd_notify_is_a_no_op_without_a_socket(monkeypatch, notify_socket):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert sd_notify("READY=1") is False
    assert sd_notify("STATUS=x", socket_path=notify_socket.path) is True
    assert notify_socket.wait_for("STATUS=x") == "STATUS=x"


def test_beat_says_ready_and_stopping(notify_socket, broker_url, tmp_path):
    """fleet-beat.service is Type=notify too."""
    import subprocess
    import sys

    from tests.support import APPS, fleet_env

    env = fleet_env(broker_url, NOTIFY_SOCKET=notify_socket.path)
    beat = subprocess.Popen([sys.executable, "-m", "fleet", "beat", "-A", "testapp"], cwd=APPS,
                            env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        assert fields(notify_socket.wait_for("READY=1"))["STATUS"].startswith("beat with")
        beat.send_signal(signal.SIGTERM)
        notify_socket.wait_for("STOPPING=1")
        assert beat.wait(15) == 0
    finally:
        if beat.poll() is None:
            import os
            os.killpg(beat.pid, signal.SIGKILL)
            beat.wait(5)
