"""Watches the broker's list of registered consumers (nodes) during a run, read-only, and
records when each consumer id appears and disappears. A node that is declared dead and
recovered by another node disappears; one that comes back under the same id (a frozen node
that resumes) appears again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from fleet.engine.transport import open_transport

INTERVAL = 0.1


class ConsumerMonitor(threading.Thread):
    """Polls `consumers()` every INTERVAL seconds until `stop()`; `events` holds
    {"t", "ev": "appeared" | "gone", "cid", "node", "pid"} and, each time a consumer's last
    heartbeat changes, {"t", "ev": "beat", "cid", "hb": its last heartbeat}, in order."""

    def __init__(self, url: str):
        super().__init__(name="chaos-monitor", daemon=True)
        self.url = url
        self.events: list[dict] = []
        self.errors = 0
        self.current: dict[str, dict] = {}
        self._beats: dict[str, float] = {}
        self._lock = threading.Lock()
        self._halt = threading.Event()

    def run(self) -> None:
        transport = open_transport(self.url)
        try:
            while not self._halt.wait(INTERVAL):
                self._poll(transport)
        finally:
            transport.close()

    def _poll(self, transport) -> None:
        try:
            records = transport.consumers()
        except Exception:  # the broker is down (a restart under test): look again later
            self.errors += 1
            return
        now = time.time()
        seen = {r.consumer_id: {"node": r.node, "pid": r.pid} for r in records}
        with self._lock:
            for cid, info in seen.items():
                if cid not in self.current:
                    self.events.append({"t": now, "ev": "appeared", "cid": cid, **info})
            for record in records:
                if self._beats.get(record.consumer_id) != record.last_heartbeat:
                    self._beats[record.consumer_id] = record.last_heartbeat
                    self.events.append({"t": now, "ev": "beat", "cid": record.consumer_id,
                                        "hb": record.last_heartbeat})
            for cid, info in self.current.items():
                if cid not in seen:
                    self.events.append({"t": now, "ev": "gone", "cid": cid, **info})
            self.current = seen

    def consumer_of(self, pid: int) -> str | None:
        """The consumer id a node's main process registered with, if it is listed now."""
        with self._lock:
            return next((cid for cid, info in self.current.items() if info["pid"] == pid),
                        None)

    def wait_gone(self, cid: str, timeout: float,
                  tick: Callable[[], None] | None = None) -> float | None:
        """Wait until `cid` is no longer registered (calling `tick` meanwhile); when that was
        seen, or None."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if tick is not None:
                tick()
            with self._lock:
                if cid not in self.current:
                    return next((e["t"] for e in reversed(self.events)
                                 if e["cid"] == cid and e["ev"] == "gone"), time.time())
            time.sleep(INTERVAL / 2)
        return None

    def stop(self) -> None:
        self._halt.set()
        self.join(5)
