"""One chaos run, start to end: for each broker, start the fleet, send the workload while the
fault schedule runs, wait for the results, stop everything, analyse, and write the JSON and
CHAOS.md.

Exit status: 0 every target met, 1 a target missed, 2 usage error, 3 the run itself failed
(the fleet did not start, the producer could not send); the reason is one line on stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import platform
import re
import signal
import subprocess
import sys
import sysconfig
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import fleet
from chaos_suite import ledger, procs, report, tasks
from chaos_suite import plan as plans
from chaos_suite.analysis import FINAL_STATES, RunData, analyse
from chaos_suite.faults import FaultRunner
from chaos_suite.monitor import ConsumerMonitor
from chaos_suite.producer import Producer
from fleet.engine.transport import mask_url

BENCH = procs.BENCH
RESULTS_CHUNK = 500
#: Wait after the last result before stopping the fleet (late duplicates still land).
SETTLE = 2.0
LOST_LINE = re.compile(r"Task (\S+)\[(\w+)\] was running on (\S+) when it died")
#: Node log lines worth quoting: a node declared dead, a task reported lost with it, a node
#: registering again after it was declared dead (Redis says so; SQLite does it silently).
EVIDENCE = ("stopped sending heartbeats", "was running on", "was not registered")
EVIDENCE_PER_KIND = 4
RECONNECT_LINE = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}): \w+/(\S+) main\] "
                            r"Broker reachable again")


class RunFailed(Exception):
    """The harness could not carry out the run (not a finding about fleet)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/chaos", description="Run a fleet of 3 nodes through kill storms, frozen "
        "nodes and broker restarts; count lost and duplicated tasks.")
    parser.add_argument("--short", action="store_true",
                        help="the CI version: 1,000 tasks, one fault of each kind (~1 min)")
    parser.add_argument("--broker", choices=["sqlite", "redis", "all"], default="all")
    parser.add_argument("-n", "--tasks", type=int, help="tasks to send (default 10,000; "
                        "1,000 with --short)")
    parser.add_argument("--duration", type=float, help="seconds over which they are sent")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json", type=Path, help="where to write the raw JSON (default "
                        "bench/results/chaos-<when>-<mode>.json)")
    parser.add_argument("--markdown", type=Path, help="where to write the report (default "
                        "bench/CHAOS.md; with --short: none unless given)")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="only rewrite the report from a run's raw JSON")
    parser.add_argument("--keep", action="store_true",
                        help="keep the run directory (ledger, node logs, broker data)")
    args = parser.parse_args(argv)
    if args.tasks is not None and args.tasks < plans.CHORD_SIZE * 5:
        parser.error(f"--tasks must be at least {plans.CHORD_SIZE * 5}")
    if args.duration is not None and args.duration < 10:
        parser.error("--duration must be at least 10 seconds")
    return args


def config_from(args: argparse.Namespace) -> plans.Config:
    overrides = {"seed": args.seed}
    if args.tasks is not None:
        overrides["tasks"] = args.tasks
    if args.duration is not None:
        overrides["duration"] = args.duration
    return plans.short_config(**overrides) if args.short else plans.default_config(**overrides)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.render is not None:
        document = json.loads(args.render.read_text())
        target = args.markdown or BENCH / "CHAOS.md"
        target.write_text(report.render(document, args.render.name))
        print(f"chaos: wrote {target}")
        return 0
    config = config_from(args)
    brokers = ["sqlite", "redis"] if args.broker == "all" else [args.broker]
    signal.signal(signal.SIGTERM, _exit_on_term)  # so the cleanup below runs on TERM too
    try:
        document = run_all(config, brokers, args.keep)
    except RunFailed as exc:
        print(f"chaos: the run failed: {exc}", file=sys.stderr)
        return 3
    return write_outputs(document, args)


def _exit_on_term(signum, frame) -> None:
    raise SystemExit(128 + signum)


def run_all(config: plans.Config, brokers: list[str], keep: bool) -> dict:
    document = {"when": datetime.now(UTC).isoformat(timespec="seconds"),
                "config": dataclasses.asdict(config), "machine": machine(), "runs": []}
    base = Path(tempfile.mkdtemp(prefix="fleet-chaos-"))
    try:
        for kind in brokers:
            print(f"chaos: {config.mode} run on {kind}: {config.tasks} tasks over "
                  f"{config.duration:g}s...", file=sys.stderr, flush=True)
            document["runs"].append(run_one(kind, config, base / kind))
    finally:
        if keep:
            print(f"chaos: the run's files are in {base}", file=sys.stderr)
        else:
            _remove(base)
    return document


def machine() -> dict:
    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "fleet": fleet.__version__, "platform": platform.platform(),
            "uptime": _uptime()}


def _uptime() -> str:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        return subprocess.run(["uptime"], capture_output=True, text=True, timeout=5,
                              check=False).stdout.strip()
    load = os.getloadavg()
    return f"load average: {load[0]:.2f}, {load[1]:.2f}, {load[2]:.2f}"


def run_one(kind: str, config: plans.Config, rundir: Path) -> dict:
    """One broker's run; always leaves no process of the run behind."""
    run_id = uuid.uuid4().hex
    rundir.mkdir(parents=True)
    env = procs.base_env(run_id)
    server = procs.RedisServer(rundir, env) if kind == "redis" else None
    monitor = None
    try:
        if server is not None:
            server.start()
        url = server.url if server is not None else f"sqlite:///{rundir / 'broker.db'}"
        env.update({"FLEET_BROKER_URL": url, "FLEET_STATE_DIR": str(rundir / "state"),
                    ledger.LEDGER_ENV: str(rundir / "ledger.jsonl"),
                    "FLEET_WORKER_HEARTBEAT_INTERVAL": str(config.heartbeat_interval),
                    "FLEET_WORKER_HEARTBEAT_TIMEOUT": str(config.heartbeat_timeout),
                    "FLEET_DEBUG": "1"})  # a node that dies of a bug logs its traceback
        tasks.app.conf.update(broker_url=url)
        tasks.app.close()
        monitor = ConsumerMonitor(url)
        monitor.start()
        nodes = procs.Nodes(rundir, env, config.nodes, config.concurrency)
        result = _run_fleet(kind, config, nodes, monitor, server)
        result["url"] = scrub(mask_url(url))
        return result
    finally:
        if monitor is not None:
            monitor.stop()
        tasks.app.close()
        if server is not None:
            server.stop()
        procs.kill_run(run_id)


@dataclass
class Phase:
    """What the sending phase left behind for the collection phase."""

    producer: Producer
    runner: FaultRunner
    faults: list[dict]
    t0: float  #: when sending began (epoch)
    sent_by: float  #: when the last task was sent


def _run_fleet(kind: str, config: plans.Config, nodes: procs.Nodes,
               monitor: ConsumerMonitor, server: procs.RedisServer | None) -> dict:
    load_before = _uptime()
    started = nodes.start()
    if started.returncode != 0:
        raise RunFailed(f"fleet multi start failed (exit {started.returncode}): "
                        f"{(started.stdout + started.stderr).strip()[-1500:]}")
    _wait_for(lambda: len(monitor.current) >= config.nodes, 20, "every node registered")
    phase = _send_under_faults(config, nodes, monitor, server)
    results = drain(phase.producer.manifest, config, phase.sent_by, phase.runner.watch)
    time.sleep(SETTLE)
    phase.runner.watch(now=True)
    finished = time.time()
    ping = nodes.ping()
    phase.runner.expected_exits.update(phase.runner.known.values())
    stopped = nodes.multi("stopwait", "--timeout", "30")
    result = _collect(config, nodes, monitor, phase, results, ping, _stuck_chords(phase, results))
    result.update({"broker": kind, "load_before": load_before, "load_after": _uptime(),
                   "finished_in_s": round(finished - phase.t0, 1),
                   "stopwait": [scrub(line) for line in
                                (stopped.stdout + stopped.stderr).strip().splitlines()[-3:]]})
    return result


def _send_under_faults(config: plans.Config, nodes: procs.Nodes, monitor: ConsumerMonitor,
                       server: procs.RedisServer | None) -> Phase:
    """Send the workload while the fault schedule runs; both follow the plan's clock."""
    plan = plans.make_plan(config, with_broker_restart=server is not None)
    gate = threading.Lock()
    t0 = time.time()
    producer = Producer(plan, t0, gate)
    producer.start()
    runner = FaultRunner(config, nodes, monitor, server, gate)
    faults = runner.run(plan.faults, t0, halted=lambda: producer.failed is not None)
    producer.join()
    if producer.failed:
        raise RunFailed(f"the producer could not send: {producer.failed}")
    return Phase(producer, runner, faults, t0, time.time())


def _stuck_chords(phase: Phase, results: dict[str, dict]) -> dict[str, dict]:
    """For each chord whose body has no final state: its count and fired claim in the
    result store (the chord's own bookkeeping, see fleet.engine.workflow)."""
    store, stuck = tasks.app.result_store, {}
    for entry in phase.producer.manifest:
        if entry["kind"] == "body" and (results.get(entry["id"]) or {}).get("state") \
                not in FINAL_STATES:
            group = entry["group"]
            stuck[group] = {"count": store.get_value(f"chord:{group}:count"),
                            "fired": store.get_value(f"chord:{group}:fired") is not None}
    return stuck


def _collect(config: plans.Config, nodes: procs.Nodes, monitor: ConsumerMonitor,
             phase: Phase, results: dict[str, dict], ping: list[str],
             stuck: dict[str, dict]) -> dict:
    """Read the ledger and the node logs, analyse, and keep what the JSON needs."""
    executions = ledger.executions(ledger.read_lines(nodes.rundir / "ledger.jsonl"))
    with open(nodes.rundir / "manifest.jsonl", "w") as out:  # for a look with --keep
        out.writelines(json.dumps(entry) + "\n" for entry in phase.producer.manifest)
    logs = read_logs(nodes.logs())
    faults = phase.faults + phase.runner.crashes
    for fault in faults:
        fault["note"] = scrub(fault.get("note", ""))
    data = RunData(dataclasses.asdict(config), phase.producer.manifest, executions, results,
                   faults, list(monitor.events), logs.lost, phase.t0, logs.reconnects, ping,
                   stuck)
    return {"summary": analyse(data), "sent_in_s": round(phase.sent_by - phase.t0, 1),
            "send_errors": phase.producer.send_errors[:20], "log_evidence": logs.evidence,
            "faults_raw": [_relative(f, phase.t0) for f in faults],
            "crash_logs": logs.crashes}


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise RunFailed(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def drain(manifest: list[dict], config: plans.Config, sent_by: float,
          tick: Callable[[], None]) -> dict[str, dict]:
    """Read results until every task has a final state, progress stalls, or the drain time
    is over, calling `tick` between reads; returns every task's last known meta (PENDING
    if none)."""
    ids = [entry["id"] for entry in manifest]
    last_eta = max((entry["eta"] for entry in manifest if entry.get("eta")), default=sent_by)
    deadline = max(sent_by, last_eta) + config.drain
    stall = 2 * config.recovery_target + 5
    final: dict[str, dict] = {}
    progress = time.time()
    while True:
        waiting = [task_id for task_id in ids if task_id not in final]
        for meta in _metas(waiting):
            if meta.get("state") in FINAL_STATES:
                final[meta["id"]] = _brief(meta)
                progress = time.time()
        now = time.time()
        if len(final) == len(ids) or now > deadline or \
                (now > last_eta and now - progress > stall):
            break
        tick()
        time.sleep(0.5)
    rest = [task_id for task_id in ids if task_id not in final]
    final.update({meta["id"]: _brief(meta) for meta in _metas(rest)})
    return final


def _metas(ids: list[str]) -> Iterator[dict]:
    for start in range(0, len(ids), RESULTS_CHUNK):
        yield from tasks.app.backend.get_metas(ids[start:start + RESULTS_CHUNK])


def _brief(meta: dict) -> dict:
    return {key: meta.get(key) for key in ("id", "state", "result", "exc_type", "exc_message")}


@dataclass
class LogFindings:
    """What the node logs tell the analysis."""

    lost: list[dict] = field(default_factory=list)  #: tasks reported lost on a dead node
    reconnects: list[dict] = field(default_factory=list)  #: "Broker reachable again"
    evidence: list[str] = field(default_factory=list)  #: a few lines of each kind, in order
    #: Tracebacks of nodes that died of an error (FLEET_DEBUG=1 makes the CLI print them).
    crashes: list[list[str]] = field(default_factory=list)


def read_logs(paths: list[Path]) -> LogFindings:
    found = LogFindings()
    quoted: dict[str, list[str]] = {key: [] for key in EVIDENCE}
    for path in paths:
        text = path.read_text(errors="replace")
        found.crashes += [[scrub(line) for line in block]
                          for block in _tracebacks(path.name, text)]
        for line in text.splitlines():
            for key, lines in quoted.items():
                if key in line and len(lines) < EVIDENCE_PER_KIND:
                    lines.append(scrub(f"{path.name}: {line}"))
            if match := LOST_LINE.search(line):
                found.lost.append({"id": match.group(2), "cid": match.group(3),
                                   "line": scrub(line)})
            if match := RECONNECT_LINE.search(line):
                when = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f")
                found.reconnects.append({"node": match.group(2), "t": when.timestamp()})
    found.evidence = sorted((line for lines in quoted.values() for line in lines),
                            key=lambda text: text.split(": ", 1)[1])
    return found


def _tracebacks(name: str, text: str, most: int = 3) -> list[list[str]]:
    """The tracebacks in a node's log (a node that died of an error): the engine's frames,
    the last frame and the exception of each; an exception that only caused another one
    is left out."""
    found = []
    for part in text.split("Traceback (most recent call last):")[1:]:
        lines = [line for line in part.splitlines()
                 if line.strip() and not set(line.strip()) <= set("^~")]
        end = next((i for i, line in enumerate(lines) if not line.startswith(" ")), None)
        if end is None:
            continue
        if lines[end + 1:end + 2] and lines[end + 1].startswith("During"):
            continue  # only the cause of the exception that follows
        frames = _frames(lines[:end])
        found.append([f"{name}: Traceback (most recent call last):",
                      *[line for frame in frames for line in frame], lines[end]])
    return found[:most]


def _frames(lines: list[str]) -> list[list[str]]:
    """The frames of fleet's engine and the last frame ("File ..." and its source line)."""
    frames: list[list[str]] = []
    for line in lines:
        if line.lstrip().startswith("File "):
            frames.append([line])
        elif frames:
            frames[-1].append(line)
    return [frame for index, frame in enumerate(frames)
            if "/fleet/engine/" in frame[0] or index == len(frames) - 1]


def scrub(text: str) -> str:
    """Text for the committed report: no paths of this checkout, the run directory or the
    Python installation (tracebacks and multi's messages carry them)."""
    for path, name in ((sysconfig.get_paths()["purelib"] + "/", "<site-packages>/"),
                       (sysconfig.get_paths()["stdlib"] + "/", "<stdlib>/"),
                       (str(procs.ROOT) + "/", ""), (tempfile.gettempdir() + "/", "<tmp>/")):
        text = text.replace(path, name)
    return text


def _relative(fault: dict, t0: float) -> dict:
    """A fault record with its times as seconds after the run began (and no paths)."""
    return {key: round(value - t0, 3) if key.startswith("t") and isinstance(value, float)
            else scrub(value) if isinstance(value, str) else value
            for key, value in fault.items()}


def write_outputs(document: dict, args: argparse.Namespace) -> int:
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    path = args.json or BENCH / "results" / f"chaos-{stamp}-{document['config']['mode']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(document, indent=1) + "\n")
    print(f"chaos: wrote {path}", file=sys.stderr)
    markdown = args.markdown or (None if args.short else BENCH / "CHAOS.md")
    if markdown is not None:
        markdown.write_text(report.render(document, path.name))
        print(f"chaos: wrote {markdown}", file=sys.stderr)
    print(report.summary_lines(document))
    missed = [t for run in document["runs"] for t in run["summary"]["targets"] if not t["met"]]
    return 1 if missed else 0


def _remove(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)
