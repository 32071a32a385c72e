"""Is a node consuming? The library side of `fleet worker --check`.

A node can be alive and still not consume (celery#8030: workers that survive a broker
restart but never fetch again). The check therefore does not stop at "the process exists":
it reads the node's latest heartbeat from the broker and the facts the node reports in it
(`Consumer.consuming_info` in fleet.engine.node.consumer), and names the first thing that
is wrong:

* no heartbeat for longer than `worker_heartbeat_timeout` (hung, stopped, or cut off from
  the broker), or not registered at all;
* shutting down, not ready yet, no child process up, or failing to reach the broker;
* idle children and nothing prefetched, yet no reserve came back for a while.

It returns data (`Health`); the CLI renders it and picks the exit code.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from typing import Any

OK, NOT_CONSUMING, UNKNOWN = "OK", "NOT CONSUMING", "UNKNOWN"

#: A hungry node (idle children, nothing prefetched) reserves at least once a second; this
#: long without a reserve coming back means its consumer is stuck.
STARVED_AFTER = 5.0


@dataclass
class Health:
    node: str
    status: str  #: OK, NOT CONSUMING or UNKNOWN (the broker could not be asked)
    detail: str
    pid: int | None = None
    heartbeat_age: float | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.status == OK

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "status": self.status, "ok": self.ok, "detail": self.detail,
                "pid": self.pid, "heartbeat_age": self.heartbeat_age, "info": self.info}


def check_node(broker: Any, nodename: str, heartbeat_timeout: float,
               pid: int | None = None) -> Health:
    """Check `nodename` through `broker` (and, if given, that process `pid` is alive)."""
    from fleet.exceptions import BrokerUnavailable

    try:
        records = [record for record in broker.consumers() if record.node == nodename]
    except (*broker.transient_errors, BrokerUnavailable) as exc:
        return Health(nodename, UNKNOWN, f"cannot reach the broker ({exc})", pid)
    alive = pid is None or _alive(pid)
    if not records:
        why = (f"process {pid} is alive but not registered with the broker" if pid and alive
               else "no node of that name is registered with the broker (not running, or "
                    "another broker or name)")
        return Health(nodename, NOT_CONSUMING, why, pid)
    record = max(records, key=lambda r: r.last_heartbeat)
    age = round(max(0.0, time.time() - record.last_heartbeat), 3)
    info = dict(record.info)
    problem = _problem(info, age, heartbeat_timeout, pid if not alive else None)
    if problem:
        return Health(nodename, NOT_CONSUMING, problem, record.pid, age, info)
    detail = (f"consuming {', '.join(record.queues)} (heartbeat {age:.1f}s ago; "
              f"{info.get('active', 0)} of {info.get('concurrency', '?')} children busy; "
              f"{info.get('processed', 0)} task(s) processed)")
    return Health(nodename, OK, detail, record.pid, age, info)


def _problem(info: dict, age: float, timeout: float, dead_pid: int | None) -> str | None:
    """The first thing wrong with the node, in order of how much it explains, or None."""
    state = info.get("state", "running")
    failures = info.get("broker_failures", 0)
    fetch_age = info.get("fetch_age", 0.0) + age
    checks = [
        (dead_pid is not None,
         f"process {dead_pid} is not running (last heartbeat {age:.1f}s ago)"),
        (age > timeout,
         f"no heartbeat for {age:.1f}s (worker_heartbeat_timeout is {timeout:g}s): the node "
         "is hung, stopped, or cannot reach the broker"),
        (state != "running", f"in {state}"),
        (info.get("ready") is False, "starting: its children are not up yet"),
        (bool(info.get("concurrency")) and info.get("children_up") == 0,
         "no child process is up (see the node's log)"),
        (bool(failures), f"the broker failed {failures} time(s) in a row; retrying"),
        (bool(info.get("hungry")) and fetch_age > STARVED_AFTER,
         f"children idle, yet no message reserved for {fetch_age:.1f}s"),
    ]
    return next((text for wrong, text in checks if wrong), None)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
