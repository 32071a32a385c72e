"""sd_notify for nodes, without processes: what the node tells systemd, and when (a real
datagram socket stands in for systemd's)."""

from __future__ import annotations

import os
import socket

import pytest

from fleet.engine import sd_notify
from fleet.engine.node.jobs import WARM
from tests.unit.engine.node.fakes import job


@pytest.fixture
def systemd(tmp_path, monkeypatch):
    """A NOTIFY_SOCKET listener; yields a function returning what it received so far."""
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)

    def received() -> list[str]:
        messages = []
        while True:
            try:
                messages.append(sock.recv(4096).decode())
            except BlockingIOError:
                return messages

    yield received
    sock.close()


def test_nothing_is_wired_without_a_notify_socket(node, monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    before = {name: list(hooks) for name, hooks in node.hooks.items()}
    assert sd_notify.attach(node) is False
    assert {name: hooks for name, hooks in node.hooks.items() if hooks} == \
        {name: hooks for name, hooks in before.items() if hooks}


def test_the_status_line_says_what_the_node_does(node):
    node.jobs.processed["units.fast"] = 5
    node.jobs.active["d1"] = job(node.app, "fast", 1)
    assert sd_notify.status_line(node) == \
        "Consuming default with 2 children: 1 running, 5 done"
    node.state = WARM
    assert sd_notify.status_line(node) == "Warm shutdown: waiting for 1 running task(s)"


def test_ready_status_stopping_and_reloading_reach_systemd(node, systemd):
    assert sd_notify.attach(node) is True
    node.emit("ready")
    (ready,) = systemd()
    assert ready.startswith(f"READY=1\nMAINPID={os.getpid()}\nSTATUS=Consuming default")
    node.emit("heartbeat")
    assert systemd() == ["STATUS=Consuming default with 2 children: 0 running, 0 done"]
    node.state = WARM
    node.emit("shutdown", WARM)
    assert systemd()[0].startswith("STOPPING=1\nSTATUS=Warm shutdown")
    node.restart_requested = True
    node.emit("shutdown", WARM)
    assert systemd()[0].startswith("RELOADING=1\nMONOTONIC_USEC=")


def test_the_watchdog_is_pinged_from_the_loop_at_half_its_interval(node, systemd, monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "4000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    sd_notify.attach(node)
    due, ping = node.timers[-1]
    assert due == 0.0  # at once, then every 2s
    assert ping(100.0) == 102.0 and systemd() == ["WATCHDOG=1"]
