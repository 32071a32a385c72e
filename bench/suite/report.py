"""RESULTS.md from a run's raw results (a dict, the same one saved as JSON). Pure."""

from __future__ import annotations

from suite import stats
from suite.stats import Metric

SECTIONS = [
    ("1. Enqueue", "One client sends N `noop` tasks, one call each (fleet also as one batched "
     "group send). Bare: one LPUSH per call.", ["enqueue.call", "enqueue.batch"]),
    ("2. Drain (and 6. the embedded SQLite broker)",
     "N tasks queued first, then one worker with concurrency 2 started. Rate from the first "
     "to the N-th completion, and from the worker's start. Results off: `noop()`; results on: "
     "`add(1, 2)` keeping its result. Bare: 2 processes doing BRPOP + INCR (+ SET for results).",
     ["drain.off", "drain.off_startup", "drain.on", "drain.on_startup"]),
    ("3. Round trip", "`add.delay(1, 2).get()` one after another against a worker with "
     "concurrency 2. Bare: LPUSH, the consumer LPUSHes the answer, BRPOP it.",
     ["roundtrip.p50", "roundtrip.p99"]),
    ("4. Idle memory (and CPU)", "A worker with concurrency 2 after one task, settled: PSS "
     "and RSS summed over its whole process tree (psutil `memory_full_info`). Fleet only: the "
     "CPU the settled, idle worker then uses over 5 s, its whole tree and its main process, in "
     "CPU-milliseconds per second (10 ms/s is 1% of one core; psutil `cpu_times`).",
     ["memory.pss", "memory.rss", "idle.cpu", "idle.cpu_main"]),
    ("5. Fleet operations", "Ten idle nodes (concurrency 2 each) with `multi start 10`, pinged "
     "until all ten answer; `app.control.ping()` and `<cli> inspect ping` with ten nodes up; "
     "`multi stopwait` of the ten; `<cli> --version` (median of 5 runs per round).",
     ["ops.start", "ops.start_cmd", "ops.ping_api", "ops.ping_cli", "ops.stopwait",
      "ops.version"]),
    ("7. The dashboard", "fleet only (Flower keeps no history to compare with): `bench/dashboard` "
     "records N tasks (100,000 in the default mode; 3 events each, 20 names, 4 nodes) into a "
     "dashboard's history through its own ingestion path, starts `fleet dashboard` on the "
     "Redis broker and times HTTP requests over one keep-alive connection; each figure is the "
     "median of 15 requests.",
     ["dashboard.overview", "dashboard.tasks", "dashboard.tasks_filtered",
      "dashboard.tasks_deep"]),
]

DASH, TIMES = "\u2013", "\u00d7"  # en dash and multiplication sign, for ranges and ratios

FORMATS = {"tasks/s": ",.0f", "calls/s": ",.0f", "ms": ".2f", "MiB": ".1f", "s": ".3f",
           "ms/s": ".2f"}

#: what would close a missed target (keyed like Verdict.profile), written from the profiles
#: this suite took on the development machine; the profile printed above is this run's own
CLOSING: dict[str, str] = {
    "drain": (
        "In the profiles taken here the pool children spend a large share of their samples "
        "blocked in `_FrameReader.next` (waiting for their next task) while the main process "
        "spends its time in `Pool.send` (one pipe write per task) and the broker round trips: "
        "the main process, not the broker, is the limit. What would close it: hand each child "
        "a few tasks per frame (a small per-child queue) so a child never waits for the main "
        "process between two tasks, and read the children's results in batches. The bare "
        "floor's consumers never hand work to another process, which is why they lead."),
    "drain-results": (
        "As for results off (the children wait for the main process), plus one result write "
        "per task: batch the result writes with the acks they follow."),
    "drain-sqlite": (
        "See the profile: the node's time in SQLite (commit and reserve statements) against "
        "its time handing tasks to children."),
    "enqueue": (
        "Each `delay()` is one round trip, as a bare LPUSH is, written by hand on a "
        "connection kept for puts (no pipeline object). What is left, measured on the "
        "development machine: about 18 us of Python per call (message build with its routing "
        "and settings lookups, JSON, a fresh id), and about 25 us of server time for the put "
        "script against about 2 us for LPUSH: the script keeps an order counter, a "
        "priority-ordered set and a body hash per message so that priorities, ETAs and "
        "reservations owned by live nodes work. What would close it: a plain-list fast path "
        "for messages with no priority and no ETA, and settings and routing resolved once "
        "per task rather than per call."),
    "enqueue-batch": (
        "A group already goes out in one `Transport.put`. Per member, on the development "
        "machine: building its message costs 14 to 16 us (a third of it reading settings), "
        "encoding 6 to 8 us, and the put script 3 to 8 us on the server. What would close "
        "it: build the members from one template (settings, routing and the shared JSON "
        "parts resolved once per group) and give the put script fewer arguments per message "
        "(no per-message priority and ETA when the whole batch shares them)."),
    "roundtrip": (
        "`AsyncResult.get()` waits on a notification (Redis: a one-entry list per stored "
        "result that the client BLPOPs after checking the value; SQLite: datagram wake-ups "
        "with a short poll as fallback), and an otherwise idle node commits a lone result at "
        "once. If this is missed, see the profile: the client's own time, then the node's "
        "time from the wake-up to the child."),
    "memory": (
        "The children are forked after the executor is imported, and `gc.freeze()` runs "
        "before the first fork, so inherited objects stay shared. What is left: each process "
        "keeps about 7 MiB private (USS; see the table), and `import redis` alone costs "
        "about 13 MiB because redis-py always imports its asyncio client. The smaller "
        "`bench/idle_memory.py` measured 37 to 38 MiB PSS for the same node; this figure is "
        "after a shorter settle. What would close it: a main process that does not import "
        "what only the CLI needs (settings checks, config parsing), and a redis client "
        "import that skips redis.asyncio."),
    "ops": (
        "The profile above adds up the CPU that starting ten nodes costs (the multi command "
        "and every node process) and the slowest imports of a node. When that CPU divided by "
        "the cores is near the target, only less work per node closes it (fewer and lazier "
        "imports in the node's main process; children forked after the imports, never "
        "importing again); when it is well below, the time goes to waiting (readiness "
        "handshake, polling intervals) and that is what to shorten."),
}


def fmt(value: float | None, unit: str) -> str:
    if value is None:
        return "—"
    return f"{value:{FORMATS.get(unit, '.3g')}}"


def metric_table(metric: Metric, labels: dict[str, str]) -> list[str]:
    lower = metric.better == "lower"
    lines = [f"**{metric.title}** ({metric.unit}, {'lower' if lower else 'higher'} is better)",
             "", f"| | median | min {DASH} max | rounds | fleet's advantage (per-round ratio) |",
             "| --- | ---: | ---: | ---: | ---: |"]
    order = [*labels, *metric.values, *metric.unavailable]
    for peer in dict.fromkeys(order):
        if peer not in metric.values and peer not in metric.unavailable:
            continue
        lines.append(_row(metric, peer, labels.get(peer, peer)))
    return [*lines, ""]


def _row(metric: Metric, peer: str, label: str) -> str:
    summary = stats.summarize(metric.values.get(peer, []))
    if summary is None:
        why = metric.unavailable.get(peer, "failed in every round (see Errors)")
        return f"| {label} | {why} | | 0 | |"
    ratio = "" if peer.startswith("fleet") else _ratio_cell(metric, peer)  # fleet vs itself
    return (f"| {label} | {fmt(summary.median, metric.unit)} | "
            f"{fmt(summary.low, metric.unit)} {DASH} {fmt(summary.high, metric.unit)} | "
            f"{summary.count} | {ratio} |")


def _ratio_cell(metric: Metric, peer: str) -> str:
    ratios = stats.round_advantages(metric, peer)
    if not ratios:
        return "—"
    middle = stats.median_advantage(metric, peer)
    return f"{middle:.2f}{TIMES} ({min(ratios):.2f} {DASH} {max(ratios):.2f})"


def header(meta: dict) -> list[str]:
    lines = ["# Benchmark results: fleet side by side with Celery, Huey, Dramatiq and RQ", ""]
    if meta.get("warning"):
        lines += [f"> **{meta['warning']}**", ""]
    sizes = meta.get("sizes", {})
    machine = meta.get("machine", {})
    versions = ", ".join(f"{name} {version}" for name, version in meta.get("versions", {}).items())
    lines += [
        f"Written by `bench/run{(' ' + meta['args']) if meta.get('args') else ''}` on "
        f"{meta.get('started', '?')} (took {meta.get('duration_s', 0):.0f} s). Mode "
        f"**{meta.get('mode', '?')}**: {sizes.get('rounds', '?')} interleaved rounds; "
        f"enqueue N={sizes.get('enqueue', '?')}, drain N={sizes.get('drain', '?')}, "
        f"round trips {sizes.get('roundtrips', '?')} per measurement; fleet operations "
        f"{sizes.get('ops_rounds', '?')} round(s).",
        "",
        f"Machine: {machine.get('cpus', '?')} CPUs, {machine.get('platform', '?')}, Python "
        f"{machine.get('python', '?')}; load average {machine.get('load_start', '?')} at the "
        f"start, {machine.get('load_end', '?')} at the end. Redis {meta.get('redis', '?')} "
        f"(private server on a loopback port). {versions}.",
        "",
        "Every round runs each peer once, in the same order (fleet, Celery, Huey, Dramatiq, "
        "RQ, fleet on SQLite, bare redis-py), so machine drift hits all alike. *fleet's "
        "advantage* is how many times better fleet's figure is than the peer's, taken within "
        "each round, then the median (and range) over rounds: above 1 fleet is faster or "
        "smaller.",
        "",
    ]
    return lines


#: (metric, redis-benchmark command, what the fraction means) for "read against the floor"
FLOOR_READINGS = [
    ("enqueue.call", "LPUSH", "fleet's one-call enqueue"),
    ("drain.off", "RPOP", "fleet's drain (results off), 2 children"),
]


def floor_section(floor: dict, metrics: dict[str, Metric]) -> list[str]:
    if not floor:
        return []
    lines = ["## The floor: `redis-benchmark -c 1`", "",
             "One connection, one command at a time, against the same private redis-server:", "",
             "| command | requests/s | p50 ms |", "| --- | ---: | ---: |"]
    for name, row in floor.items():
        lines.append(f"| {name} | {row.get('rps', 0):,.0f} | {row.get('p50_ms', DASH)} |")
    lines.append("")
    for metric_id, command, what in FLOOR_READINGS:
        metric = metrics.get(metric_id)
        summary = stats.summarize(metric.values.get("fleet", [])) if metric else None
        rps = floor.get(command, {}).get("rps")
        if summary is not None and rps:
            lines.append(f"- {what}: {summary.median:,.0f}/s = {100 * summary.median / rps:.0f}% "
                         f"of one connection's {command} rate.")
    return [*lines, ""]


def targets_section(verdicts: list[dict]) -> list[str]:
    marks = {"met": "met", "missed": "**missed**", "n/a": "not measured"}
    lines = ["## Targets", "", "| target | this run | |", "| --- | --- | --- |"]
    for verdict in verdicts:
        measured = verdict["measured"]
        if verdict["status"] == "n/a" and not any(char.isdigit() for char in measured):
            measured = "not measured"
        lines.append(f"| {verdict['target']} | {measured} | "
                     f"{marks.get(verdict['status'], verdict['status'])} |")
    return [*lines, ""]


def profiles_section(verdicts: list[dict], profiles: dict[str, str]) -> list[str]:
    missed = [v for v in verdicts if v["status"] == "missed"]
    if not missed:
        return []
    lines = ["## Where the time goes (missed targets)", ""]
    for verdict in missed:
        key = verdict.get("profile")
        lines += [f"### {verdict['target']}", ""]
        if key and key in profiles:
            lines += ["```", profiles[key], "```", ""]
        else:
            lines += ["(no profile was taken for this one)", ""]
    return lines


def closing_section(verdicts: list[dict]) -> list[str]:
    missed = [v for v in verdicts if v["status"] == "missed"]
    unmeasured = [v for v in verdicts if v["status"] == "n/a"]
    lines = ["## Closing note", ""]
    if not missed and not unmeasured:
        return [*lines, "Every target was met in this run.", ""]
    for verdict in missed:
        hint = CLOSING.get(verdict.get("profile") or "", "see the profile above")
        lines.append(f"- **{verdict['target']}**: missed ({verdict['measured']}). {hint}")
    for verdict in unmeasured:
        measured = verdict["measured"]
        why = f" ({measured})" if any(char.isdigit() for char in measured) else ""
        lines.append(f"- **{verdict['target']}**: not measured in this run{why}; see its "
                     "section for the reason.")
    return [*lines, ""]


def render(results: dict) -> str:
    meta = results.get("meta", {})
    labels = meta.get("labels", {})
    metrics = {data["id"]: Metric.from_dict(data) for data in results.get("metrics", [])}
    lines = header(meta)
    lines += targets_section(results.get("targets", []))
    lines += floor_section(results.get("floor", {}), metrics)
    for title, text, ids in SECTIONS:
        shown = [metrics[metric_id] for metric_id in ids if metric_id in metrics]
        if not shown:
            continue
        lines += [f"## {title}", "", text, ""]
        for metric in shown:
            lines += metric_table(metric, labels)
        for metric in shown:
            note = results.get("notes", {}).get(metric.id)
            if note:
                lines += [f"Note ({metric.title}): {note}", ""]
    lines += profiles_section(results.get("targets", []), results.get("profiles", {}))
    lines += closing_section(results.get("targets", []))
    errors = results.get("errors", [])
    if errors:
        lines += ["## Errors", "", *[f"- {error}" for error in errors], ""]
    return "\n".join(lines).rstrip() + "\n"
