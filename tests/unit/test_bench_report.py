"""The benchmark suite's pure parts: statistics, within-round ratios, targets and RESULTS.md.

No timing here (speed lives in bench/); these pin the arithmetic and the report's promises:
a ratio is taken within a round, a missing figure is reported as such, never as a number.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
sys.path.insert(0, str(BENCH))

from suite import report, stats, targets  # noqa: E402
from suite.metrics import Registry  # noqa: E402
from suite.stats import Metric  # noqa: E402


def drain_metric() -> Metric:
    metric = Metric("drain.off", "drain, results off", "tasks/s", "higher")
    metric.values = {"fleet": [4000.0, 2000.0, None], "celery": [400.0, 400.0, 300.0]}
    return metric


def test_summary_is_median_min_max_of_rounds_that_produced_a_value():
    summary = stats.summarize([3.0, None, 1.0, 2.0, float("nan")])
    assert summary == stats.Summary(median=2.0, low=1.0, high=3.0, count=3)
    assert stats.summarize([None]) is None


def test_percentile_interpolates_between_ranks():
    values = [float(n) for n in range(1, 101)]
    assert stats.percentile(values, 50) == pytest.approx(50.5)
    assert stats.percentile(values, 99) == pytest.approx(99.01)
    assert stats.percentile([7.0], 99) == 7.0
    with pytest.raises(ValueError):
        stats.percentile([], 50)


def test_ratio_is_taken_within_each_round_then_summarised():
    # medians alone would say 3000 / 400 = 7.5; the rounds say 10x and 5x
    metric = drain_metric()
    assert stats.round_advantages(metric, "celery") == [10.0, 5.0]
    assert stats.median_advantage(metric, "celery") == pytest.approx(7.5)
    metric.values["celery"] = [400.0, 200.0, 300.0]
    assert stats.median_advantage(metric, "celery") == pytest.approx(10.0)


def test_advantage_of_a_lower_is_better_metric_is_peer_over_fleet():
    assert stats.advantage(2.0, 10.0, "lower") == 5.0
    assert stats.advantage(10.0, 2.0, "higher") == 5.0
    assert stats.advantage(0.0, 2.0, "higher") is None


def test_targets_met_missed_and_not_measured():
    metrics = Registry()
    for fleet, celery, bare in ((4000.0, 400.0, 3600.0), (3800.0, 420.0, 3700.0)):
        metrics.add("drain.off", "fleet", fleet)
        metrics.add("drain.off", "celery", celery)
        metrics.add("drain.off", "bare", bare)
    metrics.add("roundtrip.p50", "fleet", 2.5)
    metrics.add("roundtrip.p99", "fleet", 3.0)
    verdicts = {verdict.target: verdict for verdict in targets.evaluate(dict(metrics))}
    drain = verdicts["Drain, results off: >= the 2-process bare redis-py floor (>= 8x Celery)"]
    assert drain.status == "met"
    assert verdicts["Round trip: p50 <= 1.5 ms and p99 <= 4 ms"].status == "missed"
    assert verdicts["`multi stopwait` of 10 idle nodes: <= 1 s"].status == "n/a"


def test_report_shows_figures_ratios_unavailable_peers_and_misses():
    metrics = Registry()
    metrics["drain.off"] = drain_metric()
    metrics.unavailable("ops.start", "fleet", "not available in this build (no `fleet multi`)")
    metrics.add("ops.start", "celery", 8.6)
    verdicts = targets.evaluate(dict(metrics))
    results = {
        "meta": {"mode": "quick", "warning": "Smoke run on a busy machine.",
                 "labels": {"fleet": "fleet", "celery": "Celery"}, "sizes": {"rounds": 3}},
        "metrics": [metric.to_dict() for metric in metrics.ordered()],
        "targets": [vars(verdict) for verdict in verdicts],
        "profiles": {"drain": "own time:\n  50.0%  Pool.send (fleet/engine/pool.py:152)"},
        "floor": {"RPOP": {"rps": 30000.0, "p50_ms": 0.03}},
    }
    text = report.render(results)
    assert "> **Smoke run on a busy machine.**" in text
    assert "| fleet | 3,000 | 2,000 \u2013 4,000 | 2 |  |" in text
    assert "| Celery | 400 | 300 \u2013 400 | 3 | 7.50\u00d7 (5.00 \u2013 10.00) |" in text
    assert "| fleet | not available in this build (no `fleet multi`) | | 0 | |" in text
    assert "Pool.send (fleet/engine/pool.py:152)" in text  # the profile of the missed drain
    assert "## Closing note" in text
    assert "| RPOP | 30,000 | 0.03 |" in text
    assert "fleet's drain (results off), 2 children: 3,000/s = 10% of one connection's RPOP" \
        in text


def test_raw_results_round_trip_through_json_shape():
    metric = drain_metric()
    assert Metric.from_dict(metric.to_dict()) == metric


def test_collapsed_stacks_are_parsed_and_summarised_per_process_role():
    from suite import profiles

    raw = ("process 1:\"fleet worker w@h main\";main (fleet/cli.py:1);"
           "run (fleet/engine/worker.py:9);send (fleet/engine/pool.py:152) 10\n"
           "process 2:\"fleet worker w@h child 1\";loop (fleet/engine/pool.py:292);"
           "next (fleet/engine/pool.py:344) 30\n"
           "not a stack line\n")
    stacks = profiles.parse_collapsed(raw)
    assert stacks[0] == profiles.Stack("main", ["main (fleet/cli.py:1)",
                                                "run (fleet/engine/worker.py:9)",
                                                "send (fleet/engine/pool.py:152)"], 10)
    assert [stack.role for stack in stacks] == ["main", "child"]
    text = profiles.summarize_stacks(stacks)
    assert "main process: 25.0% of samples" in text
    assert "pool children: 75.0% of samples" in text
    assert "75.0%  next (fleet/engine/pool.py:344)" in text


def test_ping_replies_are_counted_per_node_for_both_shapes():
    from suite import ops

    assert ops.count_replies({"w1@h": "pong", "w2@h": "pong"}) == 2  # fleet: keyed by node
    assert ops.count_replies([{"celery1@h": {"ok": "pong"}}, {"celery2@h": {"ok": "pong"}},
                              {"celery1@h": {"ok": "pong"}}]) == 2  # Celery: a list
    assert ops.count_replies(None) == 0


def test_report_command_line_leaves_the_note_out():
    from suite import main

    assert main.shown_args(["--quick", "--note", "busy machine", "--rounds", "2"]) == \
        "--quick --rounds 2"
    assert main.shown_args(["--note=busy", "--full"]) == "--full"


def test_the_idle_cpu_of_fleet_is_reported_beside_its_memory():
    metrics = Registry()
    metrics.add("memory.pss", "fleet", 40.0)
    for value in (1.0, 2.0, 3.0):
        metrics.add("idle.cpu", "fleet", value)
        metrics.add("idle.cpu_main", "fleet", value / 2)
    metrics.add("idle.cpu", "fleet-sqlite", 7.0)
    text = report.render({"meta": {"labels": {"fleet": "fleet", "fleet-sqlite": "fleet (SQLite)"}},
                          "metrics": [metric.to_dict() for metric in metrics.ordered()]})
    section = text.split("## 4. Idle memory (and CPU)")[1]
    assert "**idle worker, whole tree CPU** (ms/s, lower is better)" in section
    assert "| fleet | 2.00 | 1.00 \u2013 3.00 | 3 |  |" in section
    assert "| fleet (SQLite) | 7.00 | 7.00 \u2013 7.00 | 1 |  |" in section


def test_idle_cpu_is_measured_per_process_tree():
    import os

    from suite import procs

    found = procs.idle_cpu(os.getpid(), 0.05)
    assert set(found) == {"tree", "main"} and found["tree"] >= found["main"] >= 0
