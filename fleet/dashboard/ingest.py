"""Feeding the dashboard: the fleet's events into the history, and out to open pages.

One thread (the ingester) listens to the events stream with `fleet.engine.events.listen`,
the same generator `fleet events` uses (it rides out broker outages and says so), folds each
batch into the history in one transaction, and tells the `Hub`, which wakes every page
listening on `/api/stream` (server-sent events). Between batches it samples the queue
lengths for the chart, expires old chart data, and, if asked, re-sends `enable_events` so
nodes started later send task events too.

The thread is the history's only writer. It never forks and is a daemon thread, so it never
holds up the process's exit; `stop()` ends it at its next turn (at most `interval`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fleet.dashboard.history import History, Ingested

if TYPE_CHECKING:
    from collections.abc import Callable

    from fleet.dashboard.settings import DashboardSettings
    from fleet.engine.app import Fleet

log = logging.getLogger("fleet.dashboard")

#: Most events folded into one transaction.
BATCH = 1000
#: Seconds between chart-data expiries.
EXPIRE_INTERVAL = 300.0
#: Messages a slow page may fall behind before it is told to reload its data.
SUBSCRIBER_BACKLOG = 100


class Hub:
    """Fan-out of live updates to the pages' event streams (asyncio queues).

    `publish` is called from the ingester thread; each subscriber's queue lives on the
    server's event loop, so messages cross with `call_soon_threadsafe`.
    """

    def __init__(self) -> None:
        self._subscribers: set[asyncio.Queue] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def subscribe(self) -> asyncio.Queue:
        queue: asyncio.Queue = asyncio.Queue(SUBSCRIBER_BACKLOG)
        with self._lock:
            self._loop = asyncio.get_running_loop()
            self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue) -> None:
        with self._lock:
            self._subscribers.discard(queue)

    @property
    def listeners(self) -> int:
        return len(self._subscribers)

    def publish(self, message: dict[str, Any]) -> None:
        with self._lock:
            loop, subscribers = self._loop, list(self._subscribers)
        if loop is None or not subscribers or loop.is_closed():
            return
        text = json.dumps(message, default=repr)
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(self._deliver, subscribers, text)

    @staticmethod
    def _deliver(subscribers: list[asyncio.Queue], text: str) -> None:
        for queue in subscribers:
            if queue.full():  # a page that stopped reading: drop its backlog, ask a reload
                with contextlib.suppress(asyncio.QueueEmpty):
                    while True:
                        queue.get_nowait()
                queue.put_nowait(json.dumps({"kind": "reload"}))
            else:
                queue.put_nowait(text)


def summary(changed: Ingested) -> dict[str, Any]:
    """A live-update message: which tasks and nodes changed (pages refetch what they show)."""
    latest: dict[str, dict[str, Any]] = {}
    for row in changed.tasks:
        latest[row["id"]] = {"id": row["id"], "state": row["state"], "name": row["name"],
                             "node": row["node"]}
    tasks = list(latest.values())
    return {"kind": "update", "tasks": tasks[-50:], "task_count": len(tasks),
            "nodes": changed.nodes}


@dataclass
class Ingester:
    """The thread that keeps the history current (see the module docstring)."""

    app: Fleet
    history: History
    settings: DashboardSettings
    hub: Hub = field(default_factory=Hub)
    on_batch: list[Callable[[Ingested, list[dict[str, Any]]], None]] = field(
        default_factory=list)
    events_seen: int = 0
    notice: str = ""
    listening: bool = False
    last_batch: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None
    _next_sample: float = 0.0
    _next_expire: float = 0.0
    _next_enable: float = 0.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="fleet-dashboard-ingest",
                                        daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as exc:  # the broker failed before the stream could start
                self.listening = False
                self._say(f"cannot listen to events: {type(exc).__name__}: "
                          f"{' '.join(str(exc).split())}; retrying in 2s")
                self._stop.wait(2.0)

    def _say(self, text: str) -> None:
        if text != self.notice:
            log.warning("dashboard: %s", text)
        self.notice = text

    def _listen(self) -> None:
        from fleet.engine.events import listen

        batch: list[dict[str, Any]] = []
        for event in listen(self.app, stop=self._stop.is_set, interval=0.2, notice=self._say):
            if event is not None:
                batch.append(event)
                if len(batch) < BATCH:
                    continue
            elif not self.listening:
                self.listening = True
                log.info("dashboard: listening to events on %s", self.app.broker.describe())
            if batch:
                self.fold(batch)
                batch = []
            self.chores()

    def fold(self, events: list[dict[str, Any]]) -> Ingested:
        """Write one batch, then tell the pages and the metrics."""
        changed = self.history.ingest(events)
        self.events_seen += len(events)
        self.last_batch = time.time()
        for callback in self.on_batch:
            callback(changed, events)
        if changed.tasks or changed.nodes:
            self.hub.publish(summary(changed))
        return changed

    def chores(self, now: float | None = None) -> None:
        """The periodic work between batches: queue samples, expiry, enable_events."""
        now = time.time() if now is None else now
        try:
            if now >= self._next_sample:
                self._next_sample = now + self.settings.sample_interval
                self.history.record_queues(self.app.broker.queue_stats(), now)
            if now >= self._next_expire:
                self._next_expire = now + EXPIRE_INTERVAL
                self.history.expire(now)
            if self.settings.enable_events and now >= self._next_enable:
                self._next_enable = now + self.settings.events_interval
                self.app.control.broadcast("enable_events", {}, None, False)
        except Exception as exc:  # the broker is down: listen() reports it; retry later
            log.debug("dashboard: periodic work failed: %s", exc)
