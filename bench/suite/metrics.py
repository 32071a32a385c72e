"""Every metric the suite reports: id -> (title, unit, which way is better)."""

from __future__ import annotations

from suite.stats import Metric

SPECS: dict[str, tuple[str, str, str]] = {
    "enqueue.call": ("noop sent one call at a time", "calls/s", "higher"),
    "enqueue.batch": ("noop sent as one batch of N", "tasks/s", "higher"),
    "drain.off": ("drain, results off", "tasks/s", "higher"),
    "drain.off_startup": ("drain, results off, including start-up", "tasks/s", "higher"),
    "drain.on": ("drain, results on", "tasks/s", "higher"),
    "drain.on_startup": ("drain, results on, including start-up", "tasks/s", "higher"),
    "roundtrip.p50": ("round trip p50", "ms", "lower"),
    "roundtrip.p99": ("round trip p99", "ms", "lower"),
    "memory.pss": ("idle worker, whole tree PSS", "MiB", "lower"),
    "memory.rss": ("idle worker, whole tree RSS", "MiB", "lower"),
    "idle.cpu": ("idle worker, whole tree CPU", "ms/s", "lower"),
    "idle.cpu_main": ("idle worker, main process CPU", "ms/s", "lower"),
    "ops.start": ("`multi start 10` until all ten answer ping", "s", "lower"),
    "ops.start_cmd": ("the `multi start 10` command alone", "s", "lower"),
    "ops.ping_api": ("`app.control.ping()` with ten nodes up", "s", "lower"),
    "ops.ping_cli": ("`inspect ping` command with ten nodes up", "s", "lower"),
    "ops.stopwait": ("`multi stopwait` of ten idle nodes", "s", "lower"),
    "ops.version": ("`--version` start-up", "s", "lower"),
    "dashboard.overview": ("dashboard overview (/api/overview)", "ms", "lower"),
    "dashboard.tasks": ("dashboard task list, newest page", "ms", "lower"),
    "dashboard.tasks_filtered": ("dashboard task list, FAILURE of one name", "ms", "lower"),
    "dashboard.tasks_deep": ("dashboard task list, a page 90% deep", "ms", "lower"),
}


class Registry(dict[str, Metric]):
    """Metrics by id, created on first use, in the order of SPECS when saved."""

    def get_metric(self, metric_id: str) -> Metric:
        metric = self.get(metric_id)
        if metric is None:
            title, unit, better = SPECS[metric_id]
            metric = self[metric_id] = Metric(metric_id, title, unit, better)
        return metric

    def add(self, metric_id: str, peer: str, value: float | None) -> None:
        self.get_metric(metric_id).add(peer, value)

    def unavailable(self, metric_id: str, peer: str, why: str) -> None:
        self.get_metric(metric_id).unavailable[peer] = why

    def ordered(self) -> list[Metric]:
        return [self[metric_id] for metric_id in SPECS if metric_id in self]
