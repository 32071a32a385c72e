"""From what a run sent, what the ledger saw executed, the final results, the faults and the
broker's consumer list over time: the counts of the report and whether each target was met.
Pure (no processes, no clock), so tests/unit/test_chaos_report.py pins it.

Definitions
-----------
* An *execution* is one start line in the ledger (with its end line, if it finished). A task
  attempt (task id, retries so far) that has more than one execution ran more than once:
  each execution after the first is an *extra run*. Retries are new attempts, never extra.
* *Lost*: sent (by the harness, or a chord body by the fleet), but neither a final result
  (SUCCESS, FAILURE, REVOKED) nor an execution. *Unsettled*: executed, but no final
  result at the end (e.g. a retry that never came).
* Each extra run gets a *cause*, from the run before it (`prev`) and the faults:
    frozen_running      prev was running on a node when that node was frozen; the node was
                        declared dead and the task ran again elsewhere
    frozen_woke         one of the two ran on a frozen node after it woke up (SIGCONT),
                        the other elsewhere: a node declared dead ran what it held although
                        its reservations had been recovered (no fencing)
    child_killed        prev's child was SIGKILLed while it ran, or after the task's body
                        ended but before its outcome reached the node
    node_killed         prev never finished: its node was SIGKILLed (acks-late)
    node_crashed        prev's node died on its own (not killed by the harness) after prev
                        started
    killed_before_commit prev's node was SIGKILLed before its next commit told the broker
                        that prev started (early ack) or finished (acks-late)
    frozen_before_commit the same with a freeze: prev ended on a node frozen before its
                        next commit, declared dead, its reservations recovered
    killed_before_reconnect the same, widened by a broker outage: prev ran before or during
                        a broker restart and its node was killed before it reached the
                        broker again (its log's "Broker reachable again")
    broker_restart      a broker restart came between the two
    rolling_restart     a rolling restart came between the two
    unexplained         none of the above
  For acks-late tasks frozen_running, child_killed, node_killed, node_crashed and the
  *_before_commit / *_before_reconnect causes are deaths while the task ran (allowed: at
  least once); every other cause, and every extra run of an early-acked task, misses a
  target.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from chaos_suite.ledger import Execution

FINAL_STATES = frozenset({"SUCCESS", "FAILURE", "REVOKED"})
ALLOWED_LATE_CAUSES = frozenset({"frozen_running", "child_killed", "node_killed",
                                 "killed_before_commit", "killed_before_reconnect",
                                 "frozen_before_commit", "node_crashed"})
#: Starts earlier than the eta by more than this are early (same machine, same clock).
EARLY_TOLERANCE = 0.001
EXAMPLES_PER_CAUSE = 3
#: A node commits what its children did within milliseconds (FLUSH_DELAY, one round trip);
#: a kill later than this after a task ended is not why that task ran again.
COMMIT_WINDOW = 1.0
#: A child may still start the task it was just handed for a moment after its node's main
#: process was SIGKILLed (it dies of PR_SET_PDEATHSIG): such a run counts as before the kill.
KILL_SLACK = 0.2
CHORD_SUM = sum(range(20))


@dataclass
class RunData:
    """Everything a run produced that the analysis reads."""

    config: dict
    manifest: list[dict]
    executions: list[Execution]
    results: dict[str, dict]
    faults: list[dict] = field(default_factory=list)
    consumer_events: list[dict] = field(default_factory=list)
    #: Tasks a node reported as lost on a dead node: {"id", "cid", "line"} (from node logs).
    lost_reports: list[dict] = field(default_factory=list)
    started: float = 0.0  #: epoch seconds when sending began
    #: When a node logged "Broker reachable again": {"node": "w2@host", "t"} (node logs).
    reconnects: list[dict] = field(default_factory=list)
    #: The nodes that answered `fleet inspect ping` at the end (None: not asked).
    answered_ping: list[str] | None = None
    #: Chords whose body has no final state: group -> {"count", "fired"} from the store.
    stuck_chords: dict[str, dict] = field(default_factory=dict)


def analyse(data: RunData) -> dict:
    runs = _runs_by_attempt(data.executions)
    by_task = _by_task(data.executions)
    kinds = {entry["id"]: entry["kind"] for entry in data.manifest}
    acks_late = {entry["id"] for entry in data.manifest if entry["acks_late"]}
    extras = _extra_runs(runs, data, acks_late)
    summary = {
        "sent": _sent(data.manifest),
        "outcome": _outcome(data, by_task),
        "executions": len(data.executions),
        "duplicates": {
            "default_ack": _duplicates([x for x in extras if x["id"] not in acks_late], kinds),
            "acks_late": _duplicates([x for x in extras if x["id"] in acks_late], kinds),
        },
        "chords": _chords(data, by_task),
        "eta": _etas(data, by_task),
        "fencing": _fencing(data, extras),
        "faults": [_fault_metrics(f, data) for f in data.faults],
        "crashes": [{"node": f["node"], "pid": f["pid"],
                     "at": round(f["t"] - data.started, 2)}
                    for f in data.faults if f["kind"] == "crash"],
        "answered_ping": data.answered_ping,
        "examples": _examples(extras, runs, kinds, acks_late, data.started),
    }
    summary["duplicates"]["node_deaths"] = sum(
        1 for f in data.faults if f["kind"] in ("kill_node", "stop_node") and f.get("pid"))
    summary["targets"] = targets(summary, data.config)
    return summary


# -- executions -----------------------------------------------------------------------------


def _runs_by_attempt(executions: Iterable[Execution]) -> dict[tuple[str, int], list[Execution]]:
    runs: dict[tuple[str, int], list[Execution]] = defaultdict(list)
    for execution in sorted(executions, key=lambda e: e.start):
        runs[(execution.id, execution.attempt)].append(execution)
    return runs


def _by_task(executions: Iterable[Execution]) -> dict[str, list[Execution]]:
    """Every execution of every attempt of each task, in order."""
    by_task: dict[str, list[Execution]] = defaultdict(list)
    for execution in sorted(executions, key=lambda e: e.start):
        by_task[execution.id].append(execution)
    return by_task


def _extra_runs(runs: dict, data: RunData, acks_late: set[str]) -> list[dict]:
    sent = {entry["id"]: entry["sent"] for entry in data.manifest}
    context = Context(data.faults, _reconnects_by_node(data.reconnects))
    extras = []
    for (task_id, attempt), executions in runs.items():
        available = _available(runs, task_id, attempt, sent)
        for prev, cur in itertools.pairwise(executions):
            why = cause(prev, cur, context, available)
            if why == "node_killed" and task_id not in acks_late:
                # an early-acked task is reported lost, not run again, once the broker
                # knows it started: this one's started mark had not reached the broker
                why = "killed_before_commit"
            extras.append({"id": task_id, "attempt": attempt, "task": cur.task,
                           "cause": why, "prev": prev, "cur": cur})
    return extras


def _reconnects_by_node(reconnects: list[dict]) -> dict[str, list[float]]:
    by_node: dict[str, list[float]] = defaultdict(list)
    for event in sorted(reconnects, key=lambda e: e["t"]):
        by_node[event["node"]].append(event["t"])
    return by_node


def _available(runs: dict, task_id: str, attempt: int, sent: dict[str, float]) -> float:
    """Since when the attempt's message was in the broker: a retry is put when the attempt
    before it ends; a first attempt when it was sent (a chord body: when its chord was)."""
    before = runs.get((task_id, attempt - 1))
    ends = [e.end for e in before or () if e.end is not None]
    if ends:
        return min(ends)
    return sent.get(task_id, -math.inf)


@dataclass
class Context:
    """What explains extra runs: the faults, and when each node (by name) logged that it
    reached the broker again after an outage."""

    faults: list[dict]
    reconnects: dict[str, list[float]] = field(default_factory=dict)

    def of(self, kind: str) -> list[dict]:
        return [f for f in self.faults if f["kind"] == kind]


def cause(prev: Execution, cur: Execution, context: Context | list[dict],
          available: float = -math.inf) -> str:
    """Why `cur` ran although `prev` (the same attempt of the same task) ran before it.
    `available`: since when the attempt's message was in the broker (its send, or the end
    of the attempt before it), as far as the harness knows."""
    if not isinstance(context, Context):
        context = Context(context)
    return (_interrupted(prev, context) or _frozen(prev, cur, context, available) or
            _killed_after(prev, cur, context) or _restart_between(prev, cur, context) or
            "unexplained")


def _interrupted(prev: Execution, context: Context) -> str | None:
    """prev never finished: the fault that killed its process."""
    if prev.finished:
        return None
    if any(f.get("child") == prev.pid for f in context.of("kill_child")):
        return "child_killed"
    if any(f.get("pid") == prev.ppid for f in context.of("kill_node")):
        return "node_killed"
    if any(f.get("pid") == prev.ppid for f in context.of("crash")):
        return "node_crashed"
    return None


def _frozen(prev: Execution, cur: Execution, context: Context,
            available: float) -> str | None:
    freezes = [f for f in context.of("stop_node") if f.get("pid")]
    for fault in freezes:
        if prev.ppid == fault["pid"] and prev.start < fault["t"] <= _end(prev):
            return "frozen_running"
    for fault in freezes:
        if available >= fault["t"]:
            continue  # sent after the freeze began: the frozen node cannot have held it
        woke, pid = fault.get("t_cont", math.inf), fault["pid"]
        if cur.ppid == pid and cur.start >= woke and prev.start >= fault["t"]:
            return "frozen_woke"
        if prev.ppid == pid and prev.start >= woke and cur.ppid != pid and \
                not _killed_after(prev, cur, context):
            return "frozen_woke"
    return None


def _killed_after(prev: Execution, cur: Execution, context: Context) -> str | None:
    """prev finished, but its process died before what it did reached the broker: its
    child before the outcome reached the node, or its node before the next commit (or,
    after a broker outage, before the node was talking to the broker again)."""
    last = min(_done(prev) + COMMIT_WINDOW, cur.start)
    if any(f.get("child") == prev.pid and prev.start - KILL_SLACK <= f["t"] <= last
           for f in context.of("kill_child")):
        return "child_killed"
    kills = [f for f in context.of("kill_node") if f.get("pid") == prev.ppid and
             prev.start - KILL_SLACK <= f["t"] <= cur.start]
    if any(f["t"] <= last for f in kills):
        return "killed_before_commit"
    if any(f.get("pid") == prev.ppid and prev.start - KILL_SLACK <= f["t"] <= last
           for f in context.of("stop_node")):
        return "frozen_before_commit"
    for outage in context.of("restart_broker"):
        if _done(prev) + COMMIT_WINDOW < outage["t"]:
            continue  # committed before the broker went away
        back = next((t for t in context.reconnects.get(prev.node, ())
                     if t >= outage["t"]), math.inf)
        if any(outage["t"] <= f["t"] <= back for f in kills):
            return "killed_before_reconnect"
    if any(f.get("pid") == prev.ppid and prev.start <= f["t"] <= cur.start
           for f in context.of("crash")):
        return "node_crashed"
    return None


def _restart_between(prev: Execution, cur: Execution, context: Context) -> str | None:
    names = {"restart_broker": "broker_restart", "rolling_restart": "rolling_restart"}
    for fault in context.faults:
        if prev.start <= fault["t"] <= cur.start and fault["kind"] in names:
            return names[fault["kind"]]
    return None


def _done(execution: Execution) -> float:
    return execution.end if execution.end is not None else execution.start


def _end(execution: Execution) -> float:
    return execution.end if execution.end is not None else math.inf


def _duplicates(extras: list[dict], kinds: dict[str, str]) -> dict:
    tasks = {x["id"] for x in extras}
    causes = Counter(x["cause"] for x in extras)
    result = {"tasks": len(tasks), "extra_runs": len(extras),
              "by_kind": dict(Counter(kinds.get(t, "?") for t in tasks)),
              "by_cause": dict(causes)}
    result["unexplained"] = sum(n for c, n in causes.items() if c not in ALLOWED_LATE_CAUSES)
    return result


# -- outcomes -----------------------------------------------------------------------------


def _sent(manifest: list[dict]) -> dict:
    by_kind = Counter(entry["kind"] for entry in manifest)
    bodies = by_kind.pop("body", 0)
    return {"total": sum(by_kind.values()), "by_kind": dict(by_kind), "chord_bodies": bodies}


def _outcome(data: RunData, by_task: dict) -> dict:
    ran = set(by_task)
    succeeded, failed, reasons = 0, 0, Counter()
    lost, unsettled = [], []
    for entry in data.manifest:  # chord bodies too: sent by the fleet, lost all the same
        meta = data.results.get(entry["id"]) or {}
        state = meta.get("state")
        if entry["kind"] == "body" and state in FINAL_STATES:
            continue  # a chord's outcome is counted by _chords
        if state == "SUCCESS":
            succeeded += 1
        elif state in FINAL_STATES:
            failed += 1
            reasons[f"{state} {meta.get('exc_type') or ''}".strip()] += 1
        elif entry["id"] in ran:
            unsettled.append(entry["id"])
        else:
            lost.append(entry["id"])
    return {"succeeded": succeeded, "failed": failed, "failed_by_reason": dict(reasons),
            "lost": len(lost), "lost_ids": lost[:20], "unsettled": len(unsettled),
            "unsettled_ids": unsettled[:20]}


def _chords(data: RunData, by_task: dict) -> dict:
    bodies = [entry for entry in data.manifest if entry["kind"] == "body"]
    once = never = twice = failed = wrong = 0
    never_ran = []
    for entry in bodies:
        count = len(by_task.get(entry["id"], ()))
        once += count == 1
        never += count == 0
        if count == 0:
            never_ran.append({**_final(data, entry["id"]), **_stuck(data, entry, by_task)})
        twice += count > 1
        meta = data.results.get(entry["id"]) or {}
        if meta.get("state") in FINAL_STATES - {"SUCCESS"}:
            failed += 1
        elif meta.get("state") == "SUCCESS" and meta.get("result") != CHORD_SUM:
            wrong += 1
    return {"total": len(bodies), "body_once": once, "body_never": never,
            "body_more_than_once": twice, "chord_failed": failed, "wrong_sum": wrong,
            "never_ran": never_ran[:10]}


def _stuck(data: RunData, body: dict, by_task: dict) -> dict:
    """Why a chord's body never ran: the chord's keys in the result store, and its header
    members that ran more than once (with the faults that hit their first run's node)."""
    group = body.get("group")
    members = [e["id"] for e in data.manifest
               if e["kind"] == "member" and group is not None and e.get("group") == group]
    rerun = []
    for member in members:
        runs = by_task.get(member, [])
        if len(runs) > 1:
            first = runs[0]
            hits = [f"{f['kind']} {f.get('node') or ''} at {f['t'] - data.started:.3f}"
                    for f in data.faults if f.get("pid") == first.ppid and
                    first.start - KILL_SLACK <= f["t"] <= runs[1].start]
            rerun.append({"id": member, "runs": [
                f"{e.node} (node pid {e.ppid}) {e.start - data.started:.3f}" for e in runs],
                "faults": hits})
    return {"group": group, "store": data.stuck_chords.get(group), "members": len(members),
            "members_run_again": rerun[:5]}


def _etas(data: RunData, by_task: dict) -> dict:
    entries = [entry for entry in data.manifest if entry["kind"] == "eta"]
    once = never = twice = early = 0
    lateness, never_ran = [], []
    for entry in entries:
        executions = by_task.get(entry["id"], [])
        once += len(executions) == 1
        never += not executions
        if not executions:
            never_ran.append(_final(data, entry["id"]))
        twice += len(executions) > 1
        for execution in executions:
            eta = execution.eta if execution.eta is not None else entry.get("eta")
            early += eta is not None and execution.start < eta - EARLY_TOLERANCE
        if executions and entry.get("eta") is not None:
            first = executions[0]
            lateness.append(first.start - (first.eta if first.eta is not None
                                           else entry["eta"]))
    target = data.config.get("heartbeat_timeout", 8.0) + 2.0
    return {"total": len(entries), "once": once, "never": never, "more_than_once": twice,
            "early": early, "lateness": _percentiles(lateness),
            "late_over_recovery_target": sum(1 for x in lateness if x > target),
            "never_ran": never_ran[:10]}


def _final(data: RunData, task_id: str) -> dict:
    """A task's final state, for tasks that never ran."""
    meta = data.results.get(task_id) or {}
    return {"id": task_id, "state": meta.get("state"), "exc_type": meta.get("exc_type"),
            "exc_message": (meta.get("exc_message") or "")[:200]}


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {"p50": None, "p99": None, "max": None}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 3)

    return {"p50": at(0.5), "p99": at(0.99), "max": round(ordered[-1], 3)}


def _fencing(data: RunData, extras: list[dict]) -> dict:
    """What nodes declared dead did anyway."""
    finished_after = 0
    for fault in data.faults:
        if fault["kind"] != "stop_node" or not fault.get("t_dead"):
            continue
        finished_after += sum(1 for e in data.executions if e.ppid == fault["pid"] and
                              e.start < fault["t"] and e.end is not None and
                              e.end >= fault["t_dead"])
    reported = {r["id"]: r["line"] for r in data.lost_reports}
    flipped = sorted(i for i in reported
                     if (data.results.get(i) or {}).get("state") == "SUCCESS")
    return {"finished_after_declared_dead": finished_after,
            "ran_after_waking": sum(1 for x in extras if x["cause"] == "frozen_woke"),
            "reported_lost": len(reported), "reported_lost_then_succeeded": len(flipped),
            "reported_lost_then_succeeded_ids": flipped[:20],
            "reported_lost_then_succeeded_lines": [reported[i] for i in flipped[:3]]}


# -- faults -------------------------------------------------------------------------------


def _fault_metrics(fault: dict, data: RunData) -> dict:
    kind, t = fault["kind"], fault["t"]
    metrics = {"kind": kind, "at": round(t - data.started, 2), "node": fault.get("node"),
               "note": fault.get("note", "")}
    metrics["consuming_s"] = _first_start_after(data.executions, fault.get("t_up", t))
    recovered = None
    if kind in ("kill_node", "stop_node") and fault.get("cid"):
        gone = [e["t"] for e in data.consumer_events
                if e["cid"] == fault["cid"] and e["ev"] == "gone" and e["t"] >= t]
        recovered = round(min(gone) - t, 2) if gone else None
    if kind == "kill_node" and fault.get("t_back"):
        metrics["node_back_s"] = round(fault["t_back"] - t, 2)
    if kind in ("kill_child", "crash") and fault.get("t_back"):
        recovered = round(fault["t_back"] - t, 2)
    if kind == "restart_broker" and fault.get("t_up"):
        metrics["outage_s"] = round(fault["t_up"] - t, 2)
        fresh = 2 * data.config.get("heartbeat_interval", 2.0)
        metrics["nodes_back_s"] = nodes_back(data.consumer_events, t, fault["t_up"], fresh)
        metrics["reconsuming_s"] = reconsuming(data.reconnects, fault["t_up"])
        parts = (metrics["nodes_back_s"], metrics["reconsuming_s"])
        recovered = None if None in parts else max(parts)
    if kind == "restart_broker" and "answered_ping" in fault:
        metrics["answered_ping"] = fault["answered_ping"]
    if kind == "stop_node" and fault.get("t_cont"):
        metrics["frozen_s"] = round(fault["t_cont"] - t, 2)
    if kind == "rolling_restart" and fault.get("t_back"):
        metrics["took_s"] = round(fault["t_back"] - t, 2)
    metrics["recovered_s"] = recovered
    return metrics


def _first_start_after(executions: list[Execution], t: float) -> float | None:
    """Seconds from `t` until a task started anywhere in the fleet."""
    starts = [e.start for e in executions if e.start >= t]
    return round(min(starts) - t, 3) if starts else None


def reconsuming(reconnects: list[dict], t_up: float, within: float = 60.0) -> float | None:
    """After a broker restart: seconds from the server answering again until the last node
    logged "Broker reachable again" (its consumer committed and reserved again)."""
    first: dict[str, float] = {}
    for event in sorted(reconnects, key=lambda e: e["t"]):
        if t_up <= event["t"] <= t_up + within:
            first.setdefault(event["node"], event["t"])
    return round(max(first.values()) - t_up, 2) if first else None


def nodes_back(events: list[dict], t: float, t_up: float, fresh: float) -> float | None:
    """After a broker restart: seconds from the server answering again until every node
    that heartbeated within `fresh` seconds before the restart had heartbeated again."""
    alive: set[str] = set()
    for event in events:
        if event["t"] >= t:
            break
        if event["ev"] == "beat" and event["hb"] >= t - fresh:
            alive.add(event["cid"])
        elif event["ev"] == "gone":
            alive.discard(event["cid"])
    back = {}
    for event in events:
        if event["ev"] == "beat" and event["cid"] in alive and event["hb"] >= t_up:
            back.setdefault(event["cid"], event["t"])
    if not alive or set(back) != alive:
        return None
    return round(max(back.values()) - t_up, 2)


# -- evidence -------------------------------------------------------------------------------


def _examples(extras: list[dict], runs: dict, kinds: dict[str, str], acks_late: set[str],
              started: float) -> dict:
    """A few extra runs of each cause, of as many kinds as there are, with every execution
    of their attempt."""
    chosen: dict[str, list[dict]] = defaultdict(list)
    for pass_ in ("new kinds first", "then any"):
        for extra in extras:
            mode = "acks_late" if extra["id"] in acks_late else "default_ack"
            picked = chosen[f"{mode} {extra['cause']}"]
            kind = kinds.get(extra["id"], "?")
            if len(picked) >= EXAMPLES_PER_CAUSE or extra in picked or \
                    (pass_ == "new kinds first" and kind in {kinds.get(x["id"]) for x in picked}):
                continue
            picked.append(extra)
    return {key: [_example(x, runs, kinds, started) for x in picked]
            for key, picked in chosen.items()}


def _example(extra: dict, runs: dict, kinds: dict[str, str], started: float) -> dict:
    executions = runs[(extra["id"], extra["attempt"])]
    return {"id": extra["id"], "kind": kinds.get(extra["id"], "?"), "attempt": extra["attempt"],
            "executions": [{"node": e.node, "pid": e.pid, "ppid": e.ppid,
                            "start": round(e.start - started, 3),
                            "end": None if e.end is None else round(e.end - started, 3)}
                           for e in executions]}


# -- targets ------------------------------------------------------------------------------


def targets(summary: dict, config: dict) -> list[dict]:
    """Each target of issue 15: its name, the figure, and whether it was met."""
    dup = summary["duplicates"]
    chords, etas, outcome = summary["chords"], summary["eta"], summary["outcome"]
    limit = config.get("heartbeat_timeout", 8.0) + 2.0
    timed = [f for f in summary["faults"]
             if f["kind"] in ("kill_node", "stop_node", "restart_broker", "kill_child")]
    slow = [f for f in timed if f["recovered_s"] is None or f["recovered_s"] > limit]
    worst = max((f["recovered_s"] for f in timed if f["recovered_s"] is not None), default=None)
    return [
        _target("lost", "no task lost", outcome["lost"] == 0, f"{outcome['lost']} lost"),
        _target("unsettled", "every executed task reaches a final state",
                outcome["unsettled"] == 0, f"{outcome['unsettled']} without a final state"),
        _target("default_ack_once", "default-ack tasks never run twice",
                dup["default_ack"]["extra_runs"] == 0,
                f"{dup['default_ack']['tasks']} tasks ran twice or more "
                f"({_causes(dup['default_ack'])})"),
        _target("acks_late_bounded", "acks-late extra runs only after a death while they ran",
                dup["acks_late"]["unexplained"] == 0,
                f"{dup['acks_late']['extra_runs']} extra runs, "
                f"{dup['acks_late']['unexplained']} not explained by a death while running "
                f"({_causes(dup['acks_late'])})"),
        _target("fencing", "a node declared dead starts nothing it held and commits no "
                "result for what others recovered",
                not summary["fencing"]["ran_after_waking"] and
                not summary["fencing"]["finished_after_declared_dead"] and
                not summary["fencing"]["reported_lost_then_succeeded"],
                _fencing_value(summary["fencing"])),
        _target("chord_body_once", "every chord body runs exactly once",
                chords["body_once"] == chords["total"] and not chords["wrong_sum"],
                f"{chords['body_once']} of {chords['total']} once, {chords['body_never']} "
                f"never, {chords['body_more_than_once']} more than once"),
        _target("eta_once", "every ETA task runs exactly once, never early",
                etas["once"] == etas["total"] and etas["early"] == 0,
                f"{etas['once']} of {etas['total']} once, {etas['never']} never, "
                f"{etas['more_than_once']} more than once, {etas['early']} early runs"),
        _target("recovery", f"recovery within worker_heartbeat_timeout + 2 s ({limit:g} s)",
                not slow, f"worst {worst} s; {len(slow)} of {len(timed)} faults slower or "
                "never"),
        _whole(summary, config),
    ]


def _fencing_value(fencing: dict) -> str:
    return (f"{fencing['ran_after_waking']} runs of recovered messages by a woken node; "
            f"{fencing['finished_after_declared_dead']} runs finished on a frozen node after "
            f"it was declared dead; {fencing['reported_lost_then_succeeded']} tasks reported "
            "lost (WorkerLostError) by the recovery, then stored as SUCCESS by the woken "
            "node")


def _whole(summary: dict, config: dict) -> dict:
    """Harness check, beyond issue 15's list: no node died unless killed, and every node
    answers `fleet inspect ping` after a broker restart and at the end."""
    nodes = config.get("nodes", 3)
    crashes = summary["crashes"]
    pings = [("after the broker restart", f["answered_ping"]) for f in summary["faults"]
             if f.get("answered_ping") is not None]
    if summary.get("answered_ping") is not None:
        pings.append(("at the end", summary["answered_ping"]))
    deaf = [(when, len(answered)) for when, answered in pings if len(answered) < nodes]
    parts = [f"{len(crashes)} died on their own" + (
        " (" + ", ".join(f"{c['node']} at {c['at']:g} s" for c in crashes) + ")"
        if crashes else "")]
    parts += [f"{len(answered)} of {nodes} answered ping {when}" for when, answered in pings]
    return _target("whole", "no node dies unless killed; every node answers `inspect ping` "
                   "after a broker restart and at the end (harness check)",
                   not crashes and not deaf, "; ".join(parts))


def _target(key: str, name: str, met: bool, value: str) -> dict:
    return {"key": key, "name": name, "met": bool(met), "value": value}


def _causes(dup: dict) -> str:
    return ", ".join(f"{cause} {n}" for cause, n in sorted(dup["by_cause"].items())) or "none"
