"""sd_notify for nodes: tell systemd what a node is doing (Type=notify units), through the
node's hooks (the protocol itself is `fleet.daemon.sd_notify`).

READY=1 once the node is consuming (children up, registered with the broker), STATUS= lines
with what it is doing, RELOADING=1 on HUP, STOPPING=1 when it begins a shutdown, and
WATCHDOG=1 from the main loop when the unit sets WatchdogSec= (so a wedged loop is noticed).
Nothing is sent when $NOTIFY_SOCKET is not set.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from fleet.daemon import sd_notify, watchdog_interval

if TYPE_CHECKING:
    from fleet.engine.worker import Node


def attach(node: Node) -> bool:
    """Wire systemd notifications into `node`; False when not running under Type=notify."""
    if not os.environ.get("NOTIFY_SOCKET"):
        return False
    node.hooks["ready"].append(_ready)
    node.hooks["heartbeat"].append(_status)
    node.hooks["shutdown"].append(_stopping)
    interval = watchdog_interval()
    if interval:
        def ping(now: float) -> float:
            sd_notify("WATCHDOG=1")
            return now + interval

        node.add_timer(ping)
    return True


def status_line(node: Node) -> str:
    running = len(node.jobs.active)
    done = sum(node.jobs.processed.values())
    if node.state != "running":
        return f"{node.state.capitalize()}: waiting for {running} running task(s)"
    return (f"Consuming {', '.join(node.consumer.queues)} with "
            f"{node.children.describe()}: {running} running, {done} done")


def _ready(node: Node) -> None:
    sd_notify(f"READY=1\nMAINPID={os.getpid()}\nSTATUS={status_line(node)}")


def _status(node: Node) -> None:
    sd_notify(f"STATUS={status_line(node)}")


def _stopping(node: Node, how: str) -> None:
    if node.restart_requested:
        monotonic_usec = int(time.clock_gettime(time.CLOCK_MONOTONIC) * 1_000_000)
        sd_notify(f"RELOADING=1\nMONOTONIC_USEC={monotonic_usec}\nSTATUS={status_line(node)}")
    else:
        sd_notify(f"STOPPING=1\nSTATUS={status_line(node)}")
