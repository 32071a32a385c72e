"""The issue's targets, each checked against the medians of this run (pure: no I/O).

A target is "met", "missed", or "n/a" (its figure could not be measured in this build or run).
Ratios against a peer use the within-round ratios (stats.median_advantage).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from suite import stats
from suite.stats import Metric

Metrics = dict[str, Metric]


@dataclass(frozen=True)
class Verdict:
    target: str  #: the target as the issue states it
    status: str  #: met, missed, n/a
    measured: str  #: what this run measured
    profile: str | None = None  #: which profile explains a miss (key in the profiles section)


def median_of(metrics: Metrics, metric_id: str, peer: str = "fleet") -> float | None:
    metric = metrics.get(metric_id)
    summary = stats.summarize(metric.values.get(peer, [])) if metric else None
    return None if summary is None else summary.median


def ratio_of(metrics: Metrics, metric_id: str, peer: str) -> float | None:
    metric = metrics.get(metric_id)
    return None if metric is None else stats.median_advantage(metric, peer)


def _status(ok: bool | None) -> str:
    return "n/a" if ok is None else ("met" if ok else "missed")


def _all(*checks: bool | None) -> bool | None:
    """False if any measured part fails, else None if a part is unmeasured, else True."""
    if any(check is False for check in checks):
        return False
    return None if any(check is None for check in checks) else True


def _at_least(value: float | None, bound: float | None) -> bool | None:
    return None if value is None or bound is None else value >= bound


def _at_most(value: float | None, bound: float) -> bool | None:
    return None if value is None else value <= bound


def _fmt(value: float | None, spec: str = ",.0f", suffix: str = "") -> str:
    return "\u2014" if value is None else f"{value:{spec}}{suffix}"


def drain_off(m: Metrics) -> Verdict:
    fleet, bare = median_of(m, "drain.off"), median_of(m, "drain.off", "bare")
    vs_celery = ratio_of(m, "drain.off", "celery")
    ok = _all(_at_least(fleet, bare), _at_least(vs_celery, 8.0))
    return Verdict("Drain, results off: >= the 2-process bare redis-py floor (>= 8x Celery)",
                   _status(ok), f"{_fmt(fleet)} tasks/s; floor {_fmt(bare)}; "
                   f"{_fmt(vs_celery, '.1f', 'x')} Celery", "drain")


def drain_on(m: Metrics) -> Verdict:
    vs_celery = ratio_of(m, "drain.on", "celery")
    return Verdict("Drain, results on: >= 4x Celery", _status(_at_least(vs_celery, 4.0)),
                   f"{_fmt(median_of(m, 'drain.on'))} tasks/s; "
                   f"{_fmt(vs_celery, '.1f', 'x')} Celery", "drain-results")


def enqueue_call(m: Metrics) -> Verdict:
    fleet, bare = median_of(m, "enqueue.call"), median_of(m, "enqueue.call", "bare")
    bound = None if bare is None else 0.8 * bare
    return Verdict("Enqueue: >= 0.8x the bare LPUSH rate per call",
                   _status(_at_least(fleet, bound)),
                   f"{_fmt(fleet)}/s; bare LPUSH {_fmt(bare)}/s", "enqueue")


def enqueue_batch(m: Metrics) -> Verdict:
    fleet, bare = median_of(m, "enqueue.batch"), median_of(m, "enqueue.call", "bare")
    bound = None if bare is None else 5.0 * bare
    return Verdict("Batched group send: >= 5x the bare LPUSH rate per call",
                   _status(_at_least(fleet, bound)),
                   f"{_fmt(fleet)} tasks/s; 5x bare LPUSH = {_fmt(bound)}/s", "enqueue-batch")


def roundtrip(m: Metrics) -> Verdict:
    p50, p99 = median_of(m, "roundtrip.p50"), median_of(m, "roundtrip.p99")
    return Verdict("Round trip: p50 <= 1.5 ms and p99 <= 4 ms",
                   _status(_all(_at_most(p50, 1.5), _at_most(p99, 4.0))),
                   f"p50 {_fmt(p50, '.2f', ' ms')}, p99 {_fmt(p99, '.2f', ' ms')}", "roundtrip")


def memory(m: Metrics) -> Verdict:
    pss, rss = median_of(m, "memory.pss"), median_of(m, "memory.rss")
    return Verdict("Idle node, concurrency 2: <= 40 MiB PSS", _status(_at_most(pss, 40.0)),
                   f"{_fmt(pss, '.1f', ' MiB')} PSS ({_fmt(rss, '.1f', ' MiB')} RSS)", "memory")


def multi_start(m: Metrics) -> Verdict:
    value = median_of(m, "ops.start")
    return Verdict("`multi start 10` to all consuming: <= 2 s", _status(_at_most(value, 2.0)),
                   _fmt(value, ".2f", " s"), "ops")


def multi_stopwait(m: Metrics) -> Verdict:
    value = median_of(m, "ops.stopwait")
    return Verdict("`multi stopwait` of 10 idle nodes: <= 1 s", _status(_at_most(value, 1.0)),
                   _fmt(value, ".2f", " s"), "ops")


def inspect_ping(m: Metrics) -> Verdict:
    # the last reply arrives after the call began, so "call to return" bounds "last reply to
    # return" from above: meeting 0.2 s here meets the target
    value = median_of(m, "ops.ping_api")
    return Verdict("`inspect ping` of 10 nodes returns <= 0.2 s after the last reply",
                   _status(_at_most(value, 0.2)),
                   f"{_fmt(value, '.3f', ' s')} from call to return (API)", "ops")


def sqlite_drain(m: Metrics) -> Verdict:
    value = median_of(m, "drain.off", "fleet-sqlite")
    return Verdict("Embedded SQLite drain: >= 1,000 tasks/s", _status(_at_least(value, 1000.0)),
                   f"{_fmt(value)} tasks/s", "drain-sqlite")


def dashboard(m: Metrics) -> Verdict:
    overview, tasks = median_of(m, "dashboard.overview"), median_of(m, "dashboard.tasks")
    worst = max((value for value in (overview, tasks,
                                     median_of(m, "dashboard.tasks_filtered"),
                                     median_of(m, "dashboard.tasks_deep"))
                 if value is not None), default=None)
    return Verdict("Dashboard with 100,000 recorded tasks: overview and task list <= 0.5 s",
                   _status(_all(_at_most(overview, 500.0), _at_most(worst, 500.0))),
                   f"overview {_fmt(overview, '.1f', ' ms')}, task list {_fmt(tasks, '.1f', ' ms')}"
                   f" (slowest page {_fmt(worst, '.1f', ' ms')})")


CHECKS: list[Callable[[Metrics], Verdict]] = [
    drain_off, drain_on, enqueue_call, enqueue_batch, roundtrip, memory, multi_start,
    multi_stopwait, inspect_ping, sqlite_drain, dashboard]


def evaluate(metrics: Metrics) -> list[Verdict]:
    return [check(metrics) for check in CHECKS]
