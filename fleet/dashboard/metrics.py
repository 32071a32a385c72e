"""`/metrics`: the fleet in Prometheus text format (prometheus_client).

    fleet_tasks{name, state}                      tasks in the dashboard's history
    fleet_task_runtime_seconds{name}              histogram of runtimes (succeeded and failed
                                                  tasks seen since the dashboard started)
    fleet_task_events_total{type}                 events received since the dashboard started
    fleet_queue_length{queue, kind}               ready, scheduled, reserved messages
    fleet_queue_consumers{queue}                  live nodes consuming the queue
    fleet_nodes_online                            nodes with a fresh heartbeat
    fleet_node_up{node}                           1 online, 0 silent or offline
    fleet_node_active_tasks{node}, fleet_node_processed_tasks{node}
    fleet_dashboard_up                            1 while the dashboard listens to events

Queue and node figures are read from the broker at scrape time (the same calls as
`fleet queues` and `fleet status`), so they are current even without task events. Each
dashboard has its own registry (no process-wide state), so tests can build several.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from fleet.dashboard.views import node_rows, queue_rows

if TYPE_CHECKING:
    from fleet.dashboard.history import History, Ingested
    from fleet.dashboard.ingest import Ingester
    from fleet.engine.app import Fleet

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RUNTIME_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                   60.0, 300.0, float("inf"))


class FleetCollector(Collector):
    """Gauges read at scrape time from the history and the broker."""

    def __init__(self, app: Fleet, history: History, ingester: Ingester | None):
        self.app = app
        self.history = history
        self.ingester = ingester

    def collect(self) -> Iterator[GaugeMetricFamily]:
        tasks = GaugeMetricFamily("fleet_tasks", "Tasks in the dashboard's history by name "
                                  "and state.", labels=["name", "state"])
        for name, state, count in self.history.counts_by_name():
            tasks.add_metric([name, state], count)
        yield tasks
        yield from self._queues()
        yield from self._nodes()
        up = GaugeMetricFamily("fleet_dashboard_up", "1 while the dashboard listens to the "
                               "fleet's events.")
        up.add_metric([], 1 if self.ingester is not None and self.ingester.listening else 0)
        yield up

    def _queues(self) -> Iterator[GaugeMetricFamily]:
        length = GaugeMetricFamily("fleet_queue_length", "Messages in each queue by kind: "
                                   "ready, scheduled (waiting for an ETA), reserved (held "
                                   "by nodes).", labels=["queue", "kind"])
        consumers = GaugeMetricFamily("fleet_queue_consumers", "Nodes consuming each queue.",
                                      labels=["queue"])
        for row in queue_rows(self.app):
            for kind in ("ready", "scheduled", "reserved"):
                length.add_metric([row["queue"], kind], row[kind])
            consumers.add_metric([row["queue"]], row["consumers"])
        yield length
        yield consumers

    def _nodes(self) -> Iterator[GaugeMetricFamily]:
        rows = node_rows(self.app, self.history)
        online = GaugeMetricFamily("fleet_nodes_online", "Nodes with a fresh heartbeat.")
        online.add_metric([], sum(1 for row in rows if row["state"] == "online"))
        up = GaugeMetricFamily("fleet_node_up", "1 when the node's heartbeat is fresh.",
                               labels=["node"])
        active = GaugeMetricFamily("fleet_node_active_tasks", "Tasks running on the node.",
                                   labels=["node"])
        processed = GaugeMetricFamily("fleet_node_processed_tasks", "Tasks the node finished "
                                      "since it started.", labels=["node"])
        for row in rows:
            up.add_metric([row["node"]], 1 if row["state"] == "online" else 0)
            active.add_metric([row["node"]], row["active"] or 0)
            processed.add_metric([row["node"]], row["processed"] or 0)
        yield from (online, up, active, processed)


class Metrics:
    """The registry of one dashboard; `observe` is called for every batch of events."""

    def __init__(self, app: Fleet, history: History, ingester: Ingester | None = None):
        self.registry = CollectorRegistry(auto_describe=False)
        self.runtime = Histogram("fleet_task_runtime_seconds", "Runtime of finished tasks "
                                 "(since the dashboard started).", ["name"],
                                 buckets=RUNTIME_BUCKETS, registry=self.registry)
        self.events = Counter("fleet_task_events", "Events received since the dashboard "
                              "started, by type.", ["type"], registry=self.registry)
        self.registry.register(FleetCollector(app, history, ingester))

    def observe(self, changed: Ingested, events: list[dict[str, Any]]) -> None:
        for event in events:
            kind = event.get("type") or "?"
            self.events.labels(kind).inc()
            runtime = event.get("runtime")
            if kind in ("task-succeeded", "task-failed") and isinstance(runtime, int | float):
                self.runtime.labels(event.get("name") or "?").observe(runtime)

    def render(self) -> bytes:
        return generate_latest(self.registry)
