"""CHAOS.md from a run's raw JSON (`bench/chaos --render X.json` redoes it), and the few
lines `bench/chaos` prints at the end."""

from __future__ import annotations

from chaos_suite.plan import MIX

BROKER_NAMES = {"sqlite": "SQLite", "redis": "Redis"}

#: What each cause of an extra run means, and what would prevent it (rendered only when the
#: run saw that cause).
CAUSES = {
    "frozen_woke": (
        "A node frozen (SIGSTOP) past `worker_heartbeat_timeout` was declared dead and its "
        "reservations went back to their queues, where other nodes took them; when it woke "
        "(SIGCONT) it carried on with what it held: its prefetched tasks and the ETA tasks it "
        "was holding ran a second time. Nothing tells a node that it was declared dead: its "
        "next heartbeat registers it again under the same consumer id (Redis: the `consumer` "
        "script's ZADD, with only a warning `consumer ... was not registered (declared dead "
        "by another node?); registered it again`; SQLite: `heartbeat` finds no row and calls "
        "`register`), and `Node._turn` then dispatches its buffer and releases its ETA heap "
        "(`_dispatch`, `_release_due_etas`). The broker ignores its started marks and acks "
        "for messages it no longer holds, but not its results: a task recovery had marked "
        "failed with WorkerLostError is overwritten with the woken node's SUCCESS, and a "
        "woken task's follow-up messages (chain links) are put as well.",
        "Fencing, with the registration as the token. Recovery already removes the "
        "consumer (Redis: ZREM from `<p>:consumers` and DEL `<p>:consumer:<cid>` in "
        "`release_consumer`; SQLite: DELETE from `consumers`); it should also leave a "
        "tombstone (Redis `<p>:fenced:<cid>`, SQLite a `fenced` table or flag, kept for a "
        "day), and nothing the dead consumer sends may bring it back: the heartbeat updates "
        "only a registered consumer (Redis `ZADD XX`, SQLite no fallback to `register`) and "
        "answers 'fenced'; `reserve` refuses a tombstoned id; `commit` (results, puts, "
        "started marks, acks in one script or transaction) first checks that the consumer is "
        "registered and otherwise applies nothing and answers 'fenced'. A node told it is "
        "fenced drops its buffer, ETA heap and rate-limited jobs without running them, "
        "discards the batch and the outcomes of the tasks it was running (their reservations "
        "were settled by recovery: failed or requeued), and registers again under a new "
        "consumer id. Until a heartbeat has confirmed its registration, a node whose last "
        "successful heartbeat is older than `worker_heartbeat_timeout` dispatches nothing "
        "(it may have been declared dead without being able to hear it)."),
    "frozen_running": (
        "The task was running on a node that froze; the node was declared dead and the "
        "task (acks-late) ran again elsewhere. At least once: allowed for acks-late tasks.",
        ""),
    "child_killed": (
        "The child running the task was SIGKILLed; the task is acks-late with "
        "reject_on_worker_lost, so it went back to its queue and ran again. Allowed.", ""),
    "node_killed": (
        "The node running the task was SIGKILLed; an acks-late task runs again elsewhere. "
        "Allowed.", ""),
    "killed_before_commit": (
        "The task started (running or already finished) on a node that was SIGKILLed before "
        "its next commit reached the broker: for an early-acked task the started mark was "
        "not committed yet, so recovery requeued the message instead of reporting it lost "
        "(README: 'a task killed with its node inside that window is requeued rather than "
        "reported'; `Node._start` writes the task to the child's pipe, then adds the mark to "
        "the batch, flushed within FLUSH_DELAY, 2 ms); for an acks-late task the ack was "
        "not committed yet (allowed). In the ledger the first run starts within a few "
        "milliseconds of the kill.",
        "For early-acked tasks: dispatch a task to a child only once its started mark is "
        "committed (the mark can travel in the reserve round trip that brings the next "
        "batch, or in a commit sent before the task is written to the child's pipe), so a "
        "message is never running while the broker still thinks it can be redelivered. "
        "Costs one round trip of latency per dispatch batch, not per task."),
    "frozen_before_commit": (
        "As killed_before_commit, with a freeze instead of a kill: the task ran on a node "
        "that was frozen a few milliseconds later, before its next commit; the node was "
        "declared dead and the message requeued. Early-acked: the same window.",
        "As for killed_before_commit."),
    "killed_before_reconnect": (
        "The same as killed_before_commit, with a wider window: the task ran just before or "
        "while the broker was down, its node kept the started mark (or the ack) for its "
        "next commit, and was SIGKILLed after the broker was back but before the node had "
        "committed again: after an outage a node's consumer waits out its retry backoff "
        "(`Node._broker_trouble`: doubling from `broker_connection_retry_delay` up to "
        "`broker_connection_retry_max_delay`, 8 s, and failed heartbeats count too) even "
        "when its heartbeats already get through, so for seconds the broker still thinks "
        "those tasks can be redelivered.",
        "The fix of killed_before_commit closes it for early-acked tasks. Besides, a "
        "successful heartbeat should end the backoff (call `_broker_ok()`), so a node "
        "commits as soon as the broker answers again; see the broker restart's "
        "`reconsuming` in the faults table."),
    "node_crashed": (
        "The node running it died on its own (see 'Nodes that died on their own'); the "
        "harness started it again, as systemd would.", ""),
    "broker_restart": ("A broker restart came between the two runs.", ""),
    "rolling_restart": ("A rolling restart came between the two runs.", ""),
    "unexplained": ("No fault explains the second run.", ""),
}


HOW = """\
## How a run works

- **The fleet**: `fleet multi start 3 -A chaos_suite.tasks -c 2 -l warning`, pid and log
  files in the run's own directory, on the embedded SQLite broker (a file in that
  directory) and then on Redis: a private `redis-server` on a free port of 127.0.0.1
  (never 6379) with `appendonly yes` (`appendfsync everysec`), its data in that directory.
- **The workload** is sent by the harness over the run, each task at its planned moment:
  short tasks, 0.2 s tasks (`chaos.slow`), acks-late tasks (`chaos.late`, 0.05 s), ETA
  tasks due during the run (every other one sent with `acks_late=True`), chords of 20
  (members and body acks-late with `reject_on_worker_lost`, so a chord survives a death
  under it) and tasks that retry once or twice before succeeding.
- **The faults**, one at a time, on a schedule drawn from the seed:
  - SIGKILL a random node's main process (its children die with it: PR_SET_PDEATHSIG),
    then `fleet multi restart <node>`, as an operator or systemd would: fleet multi has no
    supervisor that respawns a dead node by itself (and `fleet multi start <node>` would
    mean a new node without options);
  - SIGKILL a random child;
  - SIGSTOP a node's main process and children (a paused VM, a swap stall) until the
    broker no longer lists it (another node declared it dead and recovered its
    reservations) and for longer than `worker_heartbeat_timeout`, plus one second; then
    SIGCONT;
  - TERM `redis-server`, keep it down for a second, start it again on the same port and
    data; once the recovery target (`worker_heartbeat_timeout` + 2 s) has passed, ask
    every node `fleet inspect ping`. The restart waits for any send under way and holds
    the next ones back until the server answers, so what was sent is known exactly;
  - `fleet multi restart --rolling`.

  A node that dies although nobody killed it is recorded as a crash and started again
  the same way (once the broker answers).
- **The ledger**: every task appends a line when it starts and when it ends (task id,
  attempt, node, child pid, node pid, time) to a file outside the broker, with O_APPEND and
  one write per line. The harness also records what it sent, when each fault happened,
  and the broker's consumer list every 0.1 s (read only).
- **The analysis** pairs them: *lost* = sent, no final result and no execution;
  *unsettled* = executed but no final result; an attempt (task id, retries) with more than
  one execution ran more than once, and each extra run gets a cause from the faults (see
  "Why tasks ran more than once"). For acks-late tasks an extra run after a death while the
  task ran (its node killed or frozen, its child killed) is allowed: at least once.
- After the last send the harness waits for every result (or `drain` seconds), waits 2 s
  more, stops the fleet with `fleet multi stopwait`, and kills whatever of the run is left.
"""


def render(document: dict, json_name: str) -> str:
    runs = document["runs"]
    lines = _header(document, json_name)
    lines += [*HOW.splitlines(), ""]
    lines += _targets(runs)
    lines += _counts(runs)
    lines += _faults(runs)
    lines += _crash_section(runs)
    lines += _broker_findings(runs, document["config"])
    lines += _findings(runs)
    lines += _evidence(runs)
    return "\n".join(lines).rstrip() + "\n"


def _header(document: dict, json_name: str) -> list[str]:
    config = document["config"]
    machine = document["machine"]
    mix = ", ".join(f"{int(share * 100)}% {kind}" for kind, share in MIX.items())
    lines = [
        "# Chaos: kill storms, frozen nodes, broker restarts",
        "",
        f"Rendered by `bench/chaos` from `bench/results/{json_name}` (issue 15). Run: "
        f"{document['when']}, mode `{config['mode']}`, seed {config['seed']}.",
        "",
        f"A fleet of {config['nodes']} nodes (`fleet multi start {config['nodes']} -c "
        f"{config['concurrency']}`) runs {config['tasks']:,} tasks sent over "
        f"{config['duration']:g} s ({mix}; chords of 20) while the fault schedule runs. "
        f"Heartbeats every {config['heartbeat_interval']:g} s, a node is dead after "
        f"{config['heartbeat_timeout']:g} s without one.",
        "",
        f"Machine: {machine['cpus']} cores, Python {machine['python']}, fleet "
        f"{machine['fleet']}, shared with other work. Load (`uptime`):",
        "",
    ]
    for run in document["runs"]:
        name = BROKER_NAMES.get(run["broker"], run["broker"])
        lines.append(f"- {name} run: before `{_load(run.get('load_before'))}`, after "
                     f"`{_load(run.get('load_after'))}`; sent in {run.get('sent_in_s')} s, "
                     f"last result {run.get('finished_in_s')} s after the first send")
    return [*lines, ""]


def _load(uptime: str | None) -> str:
    """The load averages of an `uptime` line."""
    if not uptime:
        return "?"
    return uptime.split("load average:")[-1].strip()


def _broker_header(runs: list[dict], first: str) -> list[str]:
    names = [BROKER_NAMES.get(run["broker"], run["broker"]) for run in runs]
    return [f"| {first} | " + " | ".join(names) + " |",
            "| --- | " + " | ".join("---" for _ in names) + " |"]


def _targets(runs: list[dict]) -> list[str]:
    lines = ["## Targets", ""]
    lines += _broker_header(runs, "target")
    for index, target in enumerate(runs[0]["summary"]["targets"]):
        cells = []
        for run in runs:
            found = run["summary"]["targets"][index]
            cells.append(f"**{'met' if found['met'] else 'MISSED'}**: {found['value']}")
        lines.append(f"| {target['name']} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def _counts(runs: list[dict]) -> list[str]:
    rows = [
        ("tasks sent", lambda s: f"{s['sent']['total']:,} (+{s['sent']['chord_bodies']} "
                                 "chord bodies)"),
        ("succeeded", lambda s: f"{s['outcome']['succeeded']:,}"),
        ("failed visibly", lambda s: f"{s['outcome']['failed']:,}" + _reasons(s)),
        ("lost (no result, never ran)", lambda s: str(s["outcome"]["lost"])),
        ("unsettled (ran, no final result)", lambda s: str(s["outcome"]["unsettled"])),
        ("executions in the ledger", lambda s: f"{s['executions']:,}"),
        ("default-ack tasks run more than once",
         lambda s: _dup(s["duplicates"]["default_ack"])),
        ("acks-late tasks run more than once", lambda s: _dup(s["duplicates"]["acks_late"])),
        ("node deaths (kills + freezes)", lambda s: str(s["duplicates"]["node_deaths"])),
        ("chord bodies run once / never / more", lambda s: "{body_once} / {body_never} / "
         "{body_more_than_once} of {total} ({chord_failed} chords failed)".format(
             **s["chords"])),
        ("ETA tasks run once / never / more / early", lambda s: "{once} / {never} / "
         "{more_than_once} / {early} of {total}".format(**s["eta"])),
        ("ETA lateness p50 / p99 / max (s)", lambda s: "{p50} / {p99} / {max}".format(
            **s["eta"]["lateness"]) + f" ({s['eta']['late_over_recovery_target']} later than "
            "the recovery target)"),
        ("runs finished on a frozen node after it was declared dead", lambda s: str(
            s["fencing"]["finished_after_declared_dead"])),
        ("reported lost (WorkerLostError), then SUCCESS", lambda s: "{} of {}".format(
            s["fencing"]["reported_lost_then_succeeded"], s["fencing"]["reported_lost"])),
        ("nodes that died on their own", lambda s: str(len(s.get("crashes", ())))),
        ("nodes answering `inspect ping` at the end", _ping),
    ]
    lines = ["## Counts", ""]
    lines += _broker_header(runs, "")
    for name, cell in rows:
        lines.append(f"| {name} | " + " | ".join(cell(run["summary"]) for run in runs) + " |")
    return [*lines, ""]


def _ping(summary: dict) -> str:
    answered = summary.get("answered_ping")
    return "not asked" if answered is None else ", ".join(answered) or "none"


def _reasons(summary: dict) -> str:
    reasons = summary["outcome"]["failed_by_reason"]
    if not reasons:
        return ""
    return " (" + ", ".join(f"{n} {why}" for why, n in sorted(reasons.items())) + ")"


def _dup(dup: dict) -> str:
    causes = ", ".join(f"{n} {c}" for c, n in sorted(dup["by_cause"].items()))
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(dup["by_kind"].items()))
    text = f"{dup['tasks']} ({dup['extra_runs']} extra runs"
    return text + (f": {causes}; tasks by kind: {kinds})" if causes else ")")


def _faults(runs: list[dict]) -> list[str]:
    lines = ["## Faults", "",
             "`at`: seconds after the first send. `recovered`: node kill or freeze: until "
             "the broker no longer listed the victim (declared dead, its reservations back "
             "on their queues); broker restart: from the server answering again until every "
             "node heartbeated again (`nodes back`) and logged `Broker reachable again`, "
             "i.e. committed and reserved again (`reconsuming`); child kill: until the node "
             "had its children again. `consuming`: from the fault (broker restart: from the "
             "server answering again) until a task started anywhere in the fleet.", ""]
    for run in runs:
        lines += [f"### {BROKER_NAMES.get(run['broker'], run['broker'])}", "",
                  "| at | fault | node | recovered (s) | consuming (s) | detail |",
                  "| --- | --- | --- | --- | --- | --- |"]
        for fault in sorted(run["summary"]["faults"], key=lambda f: f["at"]):
            lines.append(f"| {fault['at']} | {fault['kind']} | {fault.get('node') or ''} | "
                         f"{_num(fault['recovered_s'])} | {_num(fault['consuming_s'])} | "
                         f"{_detail(fault, run)} |")
        lines.append("")
    return lines


def _never_ran(item: dict) -> str:
    text = f"- `{item['id']}`: {item['state']} {item['exc_type'] or ''}".rstrip()
    if item.get("exc_message"):
        text += f": {item['exc_message']}"
    if item.get("group"):
        store = item.get("store") or {}
        text += (f". Chord `{item['group']}`: count {store.get('count')} of "
                 f"{item['members']}, fired claimed: {store.get('fired')}; members that ran "
                 "again: ")
        text += "; ".join(f"`{m['id']}` on {', then '.join(m['runs'])}"
                          + (f" ({', '.join(m['faults'])})" if m["faults"] else "")
                          for m in item.get("members_run_again", [])) or "none"
    return text


def _time(value) -> str:
    return "never" if value is None else f"{value:.3f}"


def _num(value) -> str:
    return "-" if value is None else f"{value:g}"


def _detail(fault: dict, run: dict) -> str:
    keys = ("node_back_s", "frozen_s", "outage_s", "nodes_back_s", "reconsuming_s",
            "took_s")
    parts = [f"{key.removesuffix('_s').replace('_', ' ')} {fault[key]:g} s" for key in keys
             if fault.get(key) is not None]
    if fault.get("answered_ping") is not None:
        parts.append(_ping_after_restart(fault, run))
    if fault.get("note"):
        parts.append(fault["note"].replace("|", "/"))
    return "; ".join(parts)


def _ping_after_restart(fault: dict, run: dict) -> str:
    """How many nodes answered the ping after the broker restart, and how many of those
    were new: started again by the harness after they died (a new node is not deaf)."""
    raw = next((f for f in run.get("faults_raw", ()) if f["kind"] == "restart_broker"), {})
    start, ping = raw.get("t"), raw.get("t_ping")
    renewed = sum(1 for crash in run["summary"].get("crashes", ())
                  if start is not None and ping is not None and start <= crash["at"] <= ping)
    text = f"{len(fault['answered_ping'])} node(s) answered `inspect ping`"
    return text + (f" ({renewed} of them started again after dying)" if renewed else "")


def _crash_section(runs: list[dict]) -> list[str]:
    if not any(run["summary"].get("crashes") for run in runs):
        return []
    lines = ["## Nodes that died on their own", "",
             "Nodes nobody killed that exited (noticed within 0.2 s, then started again "
             "with `fleet multi restart <node>`), and the tracebacks in their logs (the "
             "nodes run with FLEET_DEBUG=1).", ""]
    for run in runs:
        crashes = run["summary"].get("crashes") or []
        if not crashes:
            continue
        name = BROKER_NAMES.get(run["broker"], run["broker"])
        where = ", ".join(f"{c['node']} (node pid {c['pid']}) at {c['at']:g} s"
                          for c in crashes)
        lines += [f"### {name}", "", f"{len(crashes)} node(s): {where}.", ""]
        for block in run.get("crash_logs", [])[:3]:
            lines += ["```", *block, "```", ""]
    return lines


DEAF = (
    "When Redis goes away, a node's pub/sub read fails and `Node._on_subscription` calls "
    "`_resubscribe`, which closes the subscription and subscribes again at once; while the "
    "server is still down that fails and `_resubscribe` returns, keeping the closed "
    "subscription. Its `fileno()` is None, so `_turn` polls it every second, and "
    "`RedisSubscription.poll()` of a closed subscription returns nothing without raising: "
    "the node never subscribes again. It hears no broadcast any more (`fleet inspect`, "
    "`fleet control` terminate, rate_limit, shutdown, pool changes; revokes still arrive by "
    "the heartbeat's reload) and no new-message wakeup (an idle node finds a new task by its "
    "1 s poll: a round trip of ~0.9 s instead of ~10 ms, measured by hand the same way).",
    "When subscribing fails, keep trying on the broker backoff: e.g. `_resubscribe` sets "
    "`self.subscription = None` on failure and `_turn` subscribes again while it is None, "
    "or `poll()` of a closed subscription raises so `_on_subscription` retries. A "
    "transport contract test: restart redis-server, then `inspect ping` answers and a put "
    "wakes the node.")
CRASH = (
    "`Node._resubscribe` unregisters `self.subscription.fileno()`, which is None once "
    "redis-py has dropped the socket, so the selector keeps the dead socket's descriptor "
    "registered. When the OS hands that number to the next connection the node opens (the "
    "`submit` connection in `_exchange`), `selector.register` raises KeyError ('FD 9 is "
    "already registered') and the node exits with 'internal error' (exit 70) and its children "
    "with it. Whether it happens depends on which connection gets the number first.",
    "Remember the descriptor registered for the subscription (and for the round trip under "
    "way, `_pending_fd`) and unregister that one, whatever `fileno()` says now.")
SUBMIT_RAISES = (
    "When the node's consumer tried again while the server still refused connections, "
    "`RedisTransport.submit` called `_hot_connection()`, which connects, before its "
    "`try`: the ConnectionError escaped `Node._exchange` and ended the node (without "
    "FLEET_DEBUG: 'fleet: broker error: ...', exit 75), and its children with it. The other "
    "network errors of `submit` come back as a failed `Pending` and are handled as broker "
    "trouble; README promises that broker outages are survived.",
    "In `submit`, connect (and `_ensure_scripts()`) inside the `try` and return "
    "`Done(error=exc)`, remembering the reserve token for rollback as for a failed send; a "
    "transport test: `submit` while the server refuses connections returns a failed "
    "`Pending`, and a node survives a Redis restart whatever its backoff.")
CHORD_LOST = (
    "The header member that completed the count ran on a node that was killed before its "
    "next commit. The child had already counted it and claimed the chord in the result "
    "store (`workflow._count_chord_member`: `chord:<group>:member:<id>`, `count`, `fired`, "
    "written by the child itself), while the body message it built travels in the "
    "outcome's `send` list and is put by the node's next commit, with the member's ack. The "
    "node died in between: the member (acks-late) ran again elsewhere, found itself counted "
    "by another token (`_count_member` returns None) and sent nothing; `fired` is held by a "
    "follow-up that no longer exists. The body never runs and `chord(...).get()` waits "
    "forever. The README's 'the body exactly once, however many nodes run the header' holds "
    "for concurrent members, not for a node death inside that window.",
    "Make counting and sending one step that commits with the member's ack: the child "
    "returns 'count me in chord G' with its outcome, and the node's commit (one Lua script "
    "on Redis, the same transaction on SQLite) claims the member, increments, and when the "
    "count is complete claims `fired` and puts the body, all or nothing; a member run again "
    "after its node died then finds either everything done or nothing done. (Alternatively "
    "store the body message with the `fired` claim and let a member that finds the chord "
    "fired but its body never put send it again, with the body's task id as the message id "
    "so a second put is refused.)")
CHORD_STUCK = (
    "A header member's first run claimed its place in the chord "
    "(`chord:<group>:member:<id>`, holding its follow-up's token) and its child was killed "
    "before it incremented `chord:<group>:count`: the child does the two one after the other "
    "(`workflow._count_member`). The member (acks-late, rejected on worker lost) ran again, "
    "found the member key held by another token and skipped the count, as it would for a "
    "member counted already. The count stays one short; the chord never fires, its body "
    "never runs.",
    "Count with one atomic step that cannot be half done: add the member to a set and take "
    "the set's size as the count (Redis SADD + SCARD in a script, SQLite one transaction), "
    "so a second run of a member counts nothing new but nothing is lost; better, do it in "
    "the node's commit with the member's ack, as proposed for lost chord bodies.")
SILENT = (
    "Such a node leaves no traceback and no last word in its log. Reproduced by hand under "
    "strace (one node, a child SIGKILLed every 0.15 s while tasks arrive: the node died "
    "within 6 to 18 kills, on both brokers): the main process writes the next task into "
    "the pipe of a child that was just killed and not yet reaped (`Pool.send`, called by "
    "`Node._start`); `write` fails with EPIPE, the BrokenPipeError leaves the node's loop, "
    "and `fleet/cli.py` `main()` turns a BrokenPipeError into a silent exit 1 (that clause "
    "is meant for output piped into a closed reader). The node returns its prefetched "
    "messages on the way out, but the tasks it was running are lost with their children "
    "(early-acked ones reported failed by recovery, acks-late ones run again). An idle child "
    "OOM-killed between tasks does the same in production.",
    "`Node._start` (or `Pool.send`) treats a BrokenPipeError as the child having died: mark "
    "it gone (the reaper will report it), put the job back at the front of the buffer (it "
    "never started), and carry on; and `main()` catches BrokenPipeError only around writing "
    "to stdout, never around running a node.")
BACKOFF = (
    "`Node._broker_trouble` doubles one backoff for every failing path (commit/reserve, "
    "subscription, heartbeat hook, heartbeat: four failures within the same second give "
    "'retrying in 0.5s', '1.0s', '2.0s', '4.0s'), and only a successful commit ends it "
    "(`_broker_ok()` is called from `_on_pending` and `_flush`, not after a heartbeat), so "
    "the consumer sits out the last delay although the broker answers heartbeats again. "
    "Meanwhile started marks and acks wait in the node (see killed_before_reconnect).",
    "Call `_broker_ok()` after a successful heartbeat, and let failures of other paths "
    "within the current delay not double it again (one step per attempt of the consumer).")


def _broker_findings(runs: list[dict], config: dict) -> list[str]:
    """What the broker restart showed besides extra runs: deaf nodes, crashes, slow reuse."""
    lines = []
    nodes, wait = config["nodes"], config["heartbeat_timeout"] + 2.0
    for run in runs:
        name = BROKER_NAMES.get(run["broker"], run["broker"])
        for fault in run["summary"]["faults"]:
            if fault["kind"] != "restart_broker":
                continue
            answered = fault.get("answered_ping")
            if answered is not None and len(answered) < nodes:
                lines += _finding(f"Deaf after a broker restart ({name})",
                                  f"{len(answered)} of {nodes} nodes answered `fleet inspect "
                                  f"ping` {wait:g} s after the server was back, although "
                                  "they heartbeated and consumed.", DEAF)
            back, again = fault.get("nodes_back_s"), fault.get("reconsuming_s")
            if again is not None and again - (back or 0) > 2:
                beats = f"heartbeats again {back:g} s after the server was back, " \
                    if back is not None else ""
                lines += _finding(f"Slow to consume after a broker restart ({name})",
                                  f"{beats}the last node committed and reserved again "
                                  f"{again:g} s after the server was back.", BACKOFF)
        lines += _run_findings(run, name)
    return ["## Other findings", "", *lines] if lines else []


def _run_findings(run: dict, name: str) -> list[str]:
    """A finding per kind of crash the tracebacks show, for lost chord bodies, and for
    nodes that died without a traceback."""
    blocks = run.get("crash_logs", [])
    kinds = ((lambda b: "is already registered" in b[-1], "Nodes that crashed after a broker "
              "restart: stale descriptor", "`KeyError: ... is already registered`", CRASH),
             (lambda b: any("_hot_connection" in line for line in b), "Nodes that died "
              "during a broker outage", "a `ConnectionError` out of `RedisTransport.submit`",
              SUBMIT_RAISES))
    lines = []
    for matches, title, what, text in kinds:
        count = sum(1 for block in blocks if matches(block))
        if count:
            lines += _finding(f"{title} ({name})", f"{count} node(s) died of {what} "
                              "(tracebacks above).", text)
    hung = [item for item in run["summary"]["chords"].get("never_ran", [])
            if item.get("store") and item["state"] not in ("SUCCESS", "FAILURE", "REVOKED")]
    fired = [item for item in hung if item["store"].get("fired")]
    short = [item for item in hung if not item["store"].get("fired")
             and int(item["store"].get("count") or 0) < item["members"]]
    if fired:
        lines += _finding(f"Chord bodies lost ({name})",
                          f"{len(fired)} chord(s) counted all their members and were "
                          "claimed as fired, but their body never ran and has no result "
                          "(evidence below).", CHORD_LOST)
    if short:
        lines += _finding(f"Chords that never fire ({name})",
                          f"{len(short)} chord(s) stopped one count short: every member "
                          "ran and succeeded, the count did not reach the header's size, "
                          "the body never ran (evidence below).", CHORD_STUCK)
    silent = len(run["summary"].get("crashes") or []) - len(blocks)
    if silent > 0:
        lines += _finding(f"Nodes that died without a word ({name})",
                          f"{silent} node(s) died with no traceback in their log.", SILENT)
    return lines


def _finding(title: str, seen: str, text: tuple[str, str]) -> list[str]:
    meaning, fix = text
    return [f"**{title}**: {seen} {meaning}", "", f"*Fix proposed*: {fix}", ""]


def _findings(runs: list[dict]) -> list[str]:
    seen = {}
    for run in runs:
        for mode in ("default_ack", "acks_late"):
            for cause, count in run["summary"]["duplicates"][mode]["by_cause"].items():
                seen.setdefault(cause, []).append(
                    f"{BROKER_NAMES.get(run['broker'], run['broker'])} {mode.replace('_', '-')}"
                    f" {count}")
    if not seen:
        return []
    lines = ["## Why tasks ran more than once", ""]
    for cause, where in sorted(seen.items()):
        meaning, fix = CAUSES.get(cause, ("", ""))
        lines += [f"**{cause}** ({'; '.join(where)}): {meaning}", ""]
        if fix:
            lines += [f"*Fix proposed*: {fix}", ""]
    return lines


def _evidence(runs: list[dict]) -> list[str]:
    lines = ["## Evidence", "",
             "Executions of a few tasks that ran more than once (node, child pid, node pid, "
             "start and end in seconds after the first send; `never`: it never finished).", ""]
    for run in runs:
        lines += [f"### {BROKER_NAMES.get(run['broker'], run['broker'])}", ""]
        for fault in run.get("faults_raw", ()):
            if fault["kind"] == "stop_node" and fault.get("pid"):
                lines += [f"The frozen node: {fault['node']} (node pid {fault['pid']}), SIGSTOP "
                          f"at {fault['t']:.3f}, no longer listed by the broker at "
                          f"{_time(fault.get('t_dead'))}, SIGCONT at {_time(fault['t_cont'])}.",
                          ""]
        for key, examples in sorted(run["summary"]["examples"].items()):
            lines.append(f"- {key}:")
            for example in examples:
                runs_text = "; ".join(
                    f"{e['node']} pid {e['pid']} (node {e['ppid']}) {e['start']:.3f}-"
                    f"{'never' if e['end'] is None else format(e['end'], '.3f')}"
                    for e in example["executions"])
                lines.append(f"  - {example['kind']} `{example['id']}` try "
                             f"{example['attempt']}: {runs_text}")
        for what, found in (("ETA tasks", run["summary"]["eta"].get("never_ran")),
                            ("Chord bodies", run["summary"]["chords"].get("never_ran"))):
            if found:
                lines += ["", f"{what} that never ran, with their final state:", ""]
                lines += [_never_ran(item) for item in found]
        flipped = run["summary"]["fencing"].get("reported_lost_then_succeeded_lines")
        if flipped:
            lines += ["", "Reported lost by the node that recovered the frozen one, then "
                      "stored as SUCCESS by the frozen node once it woke (final state "
                      "SUCCESS):", "", "```", *flipped, "```"]
        if run.get("log_evidence"):
            lines += ["", "Node log lines about dead nodes (the first few of each kind):", "",
                      "```"]
            lines += run["log_evidence"]
            lines += ["```"]
        lines.append("")
    return lines


def summary_lines(document: dict) -> str:
    out = []
    for run in document["runs"]:
        name = BROKER_NAMES.get(run["broker"], run["broker"])
        for target in run["summary"]["targets"]:
            out.append(f"{name:6s} {'met   ' if target['met'] else 'MISSED'} "
                       f"{target['name']}: {target['value']}")
    return "\n".join(out)
