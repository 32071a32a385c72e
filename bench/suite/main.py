"""`bench/run`: every scenario for fleet and each peer, interleaved in rounds; RESULTS.md.

Runs inside the bench virtualenv (bench/run makes it). Starts a private redis-server, runs
the rounds, takes profiles for missed targets, writes bench/results/<when>-<mode>.json and
bench/RESULTS.md, and kills every process it started, also on failure or Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from suite import ops, procs, profiles, redisserver, report, scenarios, targets
from suite.metrics import Registry
from suite.peers import PEERS, Env, Peer, Unavailable

BENCH = Path(__file__).resolve().parent.parent
APPS = BENCH / "apps"

MODES = {
    "quick": scenarios.Sizes(enqueue=300, drain=300, roundtrips=60, rounds=2, ops_rounds=1),
    "default": scenarios.Sizes(enqueue=2000, drain=1500, roundtrips=300, rounds=3,
                               ops_rounds=3),
    "full": scenarios.Sizes(enqueue=10000, drain=10000, roundtrips=2000, rounds=5,
                            ops_rounds=5),
}
#: RQ forks a work horse per job (~50-100 jobs/s): it drains a fifth of N so a run stays
#: within minutes; its rate is still a rate
DRAIN_SHARE = {"rq": 0.2}
#: How long an idle fleet worker's CPU is measured (after its memory settled).
IDLE_CPU_SECONDS = 5.0
SCENARIOS = ["enqueue", "drain", "roundtrip", "memory", "ops", "dashboard"]
#: recorded tasks for the dashboard scenario, per mode (the target speaks of 100,000)
DASHBOARD_TASKS = {"quick": 10_000, "default": 100_000, "full": 100_000}
#: the metrics each scenario yields per peer and round; a failed measurement records None for
#: each, so that every peer's values stay aligned by round (ratios pair them by position)
YIELDS = {
    "enqueue": ["enqueue.call"],
    "drain": ["drain.off", "drain.off_startup", "drain.on", "drain.on_startup"],
    "roundtrip": ["roundtrip.p50", "roundtrip.p99"],
    "memory": ["memory.pss", "memory.rss"],
    "ops": ["ops.start", "ops.start_cmd", "ops.ping_api", "ops.ping_cli", "ops.stopwait"],
    "dashboard": ["dashboard.overview", "dashboard.tasks", "dashboard.tasks_filtered",
                  "dashboard.tasks_deep"],
}
#: bench/dashboard's request labels -> our metric ids
DASHBOARD_REQUESTS = {
    "overview (/api/overview)": "dashboard.overview",
    "task list, newest page (/api/tasks)": "dashboard.tasks",
    "task list, FAILURE of one name": "dashboard.tasks_filtered",
    "task list, 90% deep": "dashboard.tasks_deep",
}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.splitlines()[0])
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--quick", action="store_const", dest="mode", const="quick",
                      help="tiny N, 2 rounds: checks the harness end to end (~2 min)")
    size.add_argument("--full", action="store_const", dest="mode", const="full",
                      help="large N, 5 rounds (tens of minutes)")
    parser.set_defaults(mode="default")
    parser.add_argument("--rounds", type=int, help="override the mode's number of rounds")
    parser.add_argument("--only", default=",".join(SCENARIOS),
                        help=f"comma list of scenarios (default: all of {','.join(SCENARIOS)})")
    parser.add_argument("--peers", help="comma list of peers (default: all); fleet is always in")
    parser.add_argument("--no-profile", action="store_true", help="skip profiles of misses")
    parser.add_argument("--note", help="a warning line for the top of RESULTS.md")
    parser.add_argument("--results", type=Path, default=BENCH / "RESULTS.md",
                        help="where to write the report (default: bench/RESULTS.md); the raw "
                        "JSON goes to results/ beside it")
    parser.add_argument("--render", type=Path, metavar="JSON",
                        help="measure nothing: write the report from a raw results file")
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenario {', '.join(sorted(unknown))}; choose from "
                     f"{', '.join(SCENARIOS)}")
    return args


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


class Suite:
    """The state of one run: environment, peers, metrics, errors."""

    def __init__(self, args: argparse.Namespace, env: Env):
        self.args = args
        self.env = env
        self.sizes = MODES[args.mode]
        if args.rounds:
            self.sizes = scenarios.Sizes(**{**asdict(self.sizes), "rounds": args.rounds,
                                            "ops_rounds": args.rounds})
        wanted = set(args.peers.split(",")) | {"fleet"} if args.peers else None
        self.peers = [cls(env) for cls in PEERS if wanted is None or cls.name in wanted]
        self.metrics = Registry()
        self.errors: list[str] = []
        self.notes: dict[str, str] = {}
        self.profiles: dict[str, str] = {}

    def peer(self, name: str) -> Peer | None:
        return next((peer for peer in self.peers if peer.name == name), None)

    # -- rounds -----------------------------------------------------------------------------

    def rounds(self, scenario: str, measure: Callable[[Peer], dict[str, float | None]]) -> None:
        taking = [peer for peer in self.peers if scenario in peer.scenarios]
        for number in range(1, self.sizes.rounds + 1):
            for peer in taking:
                self.env.redis.flushdb()
                peer.prepare()
                try:
                    values = measure(peer)
                except Exception as exc:  # one failed measurement must not end the run
                    self.errors.append(f"{scenario}, round {number}, {peer.label}: {exc}")
                    progress(f"{scenario} round {number} {peer.label}: FAILED: {exc}")
                    values = dict.fromkeys(YIELDS[scenario])
                finally:
                    procs.kill_strays()
                for metric_id, value in values.items():
                    self.metrics.add(metric_id, peer.name, value)
                shown = ", ".join(f"{key} {value:,.2f}" for key, value in values.items()
                                  if value is not None)
                progress(f"{scenario} round {number}/{self.sizes.rounds} {peer.label}: {shown}")

    def enqueue(self, peer: Peer) -> dict[str, float | None]:
        values: dict[str, float | None] = {
            "enqueue.call": scenarios.enqueue(peer, self.sizes.enqueue)}
        if peer.name == "fleet":
            self.env.redis.flushdb()
            try:
                values["enqueue.batch"] = scenarios.enqueue_batched(peer, self.sizes.enqueue)
            except Unavailable as exc:
                self.metrics.unavailable("enqueue.batch", "fleet", str(exc))
            self.env.redis.flushdb()
            values_put = scenarios.timed_batch(peer.send_noops_put, self.sizes.enqueue)
            self.metrics.add("enqueue.batch", "fleet-put", values_put)
        return values

    def drain(self, peer: Peer) -> dict[str, float | None]:
        count = max(50, int(self.sizes.drain * DRAIN_SHARE.get(peer.name, 1.0)))
        timeout = 60 + count / 20
        off = scenarios.drain(peer, count, results=False, timeout=timeout)
        procs.kill_strays()
        self.env.redis.flushdb()
        peer.prepare()
        on = scenarios.drain(peer, count, results=True, timeout=timeout)
        return {"drain.off": off.rate, "drain.off_startup": off.with_startup,
                "drain.on": on.rate, "drain.on_startup": on.with_startup}

    def roundtrip(self, peer: Peer) -> dict[str, float | None]:
        found = scenarios.roundtrip(peer, self.sizes.roundtrips)
        return {"roundtrip.p50": found.p50_ms, "roundtrip.p99": found.p99_ms}

    def memory(self, peer: Peer) -> dict[str, float | None]:
        fleet = peer.name.startswith("fleet")  # (idle CPU: fleet only, both brokers)
        found = scenarios.memory(peer, IDLE_CPU_SECONDS if fleet else 0.0)
        if fleet:
            self.metrics.add("idle.cpu", peer.name, found["cpu"])
            self.metrics.add("idle.cpu_main", peer.name, found["cpu_main"])
        return {"memory.pss": found["pss"], "memory.rss": found["rss"]}

    def ops(self) -> None:
        frameworks = [ops.FleetOps(self.env), ops.CeleryOps(self.env)]
        if self.peer("celery") is None:
            frameworks.pop()
        for number in range(1, self.sizes.ops_rounds + 1):
            for framework in frameworks:
                self.ops_once(framework, number)

    def ops_once(self, framework: ops.Framework, number: int) -> None:
        self.env.redis.flushdb()
        name = framework.name
        try:
            self.metrics.add("ops.version", name, ops.startup_time(framework))
        except Exception as exc:
            self.metrics.add("ops.version", name, None)
            self.errors.append(f"ops, round {number}, {name} --version: {exc}")
        try:
            found = ops.measure(framework)
        except Unavailable as exc:
            for metric_id in YIELDS["ops"]:
                self.metrics.unavailable(metric_id, name, str(exc))
            progress(f"ops round {number} {name}: {exc}")
            return
        except Exception as exc:
            for metric_id in YIELDS["ops"]:
                self.metrics.add(metric_id, name, None)
            self.errors.append(f"ops, round {number}, {name}: {exc}")
            progress(f"ops round {number} {name}: FAILED: {exc}")
            return
        for metric_id, value in (("ops.start", found.start_to_ping),
                                 ("ops.start_cmd", found.start_command),
                                 ("ops.ping_api", found.ping_api),
                                 ("ops.ping_cli", found.ping_cli),
                                 ("ops.stopwait", found.stopwait)):
            self.metrics.add(metric_id, name, value)
        progress(f"ops round {number}/{self.sizes.ops_rounds} {name}: start "
                 f"{found.start_to_ping:.2f}s, ping {found.ping_api:.3f}s ({found.replies} "
                 f"replies), cli ping {found.ping_cli:.2f}s, stopwait {found.stopwait:.2f}s")

    def dashboard(self) -> None:
        """fleet only: `bench/dashboard` on our Redis server's machine (it starts its own
        private redis-server and dashboard), once per run: each figure is already a median."""
        tasks = DASHBOARD_TASKS[self.args.mode]
        progress(f"dashboard: recording {tasks:,} tasks, then timing the pages")
        done = subprocess.run([sys.executable, str(BENCH / "dashboard"), "-n", str(tasks),
                               "--rounds", "15", "--broker", "redis", "--json"],
                              capture_output=True, text=True, timeout=900, check=False,
                              env=self.env.base_env)
        if done.returncode != 0:
            for metric_id in YIELDS["dashboard"]:
                self.metrics.add(metric_id, "fleet", None)
            self.errors.append(f"dashboard: exit {done.returncode}: {done.stderr.strip()[-300:]}")
            progress(f"dashboard: FAILED (exit {done.returncode})")
            return
        figures = json.loads(done.stdout)["requests"]
        for label, metric_id in DASHBOARD_REQUESTS.items():
            self.metrics.add(metric_id, "fleet", figures[label]["median_ms"])
        progress("dashboard: " + ", ".join(f"{metric_id} {figures[label]['median_ms']:.1f} ms"
                                           for label, metric_id in DASHBOARD_REQUESTS.items()))

    # -- profiles of misses -------------------------------------------------------------------

    def take_profiles(self, verdicts: list[targets.Verdict]) -> None:
        fleet = self.peer("fleet")
        sqlite = self.peer("fleet-sqlite")
        sizes = self.sizes
        # long enough for a few thousand samples
        long_drain = min(30000, max(3000, 10 * sizes.drain))
        big_group = max(5000, sizes.enqueue)
        out = self.env.workdir / "pyspy.txt"
        makers: dict[str, Callable[[], str]] = {
            "drain": lambda: profiles.worker_drain(fleet, long_drain, False, out),
            "drain-results": lambda: profiles.worker_drain(fleet, long_drain, True, out),
            "drain-sqlite": lambda: profiles.worker_drain(sqlite, long_drain, False, out),
            "enqueue": lambda: profiles.client(fleet.send_noop, sizes.enqueue),
            "enqueue-batch": lambda: profiles.client(
                lambda: fleet.send_noops_batched(big_group), 1),
            "roundtrip": lambda: profiles.roundtrip(fleet, sizes.roundtrips, out),
            "memory": lambda: profiles.memory_breakdown(fleet),
            "ops": lambda: profiles.start_cost(ops.FleetOps(self.env)),
        }
        for verdict in verdicts:
            key = verdict.profile
            if verdict.status != "missed" or key not in makers or key in self.profiles:
                continue
            progress(f"profiling: {verdict.target}")
            self.env.redis.flushdb()
            out.unlink(missing_ok=True)
            try:
                self.profiles[key] = makers[key]()
            except Exception as exc:
                self.profiles[key] = f"(profiling failed: {exc})"
            finally:
                procs.kill_strays()


def redis_benchmark(port: int, requests: int) -> dict[str, dict]:
    """`redis-benchmark -c 1` against our server: requests/s and p50 per command."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return {}
    done = subprocess.run([binary, "-h", "127.0.0.1", "-p", str(port), "-c", "1", "-n",
                           str(requests), "-t", "ping,set,get,incr,lpush,rpop", "--csv"],
                          capture_output=True, text=True, timeout=300, check=False)
    found = {}
    for line in done.stdout.splitlines():
        cells = [cell.strip('"') for cell in line.split(",")]
        if len(cells) < 2 or cells[0] == "test":
            continue
        row = {"rps": float(cells[1])}
        if len(cells) > 4:
            row["p50_ms"] = float(cells[4])
        found[cells[0]] = row
    return found


def machine(load: str) -> dict[str, str]:
    return {"cpus": str(os.cpu_count()), "platform": platform.platform(terse=True),
            "python": platform.python_version(), "load_start": load}


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def make_env(workdir: Path, redis_url: str) -> Env:
    base = {key: value for key, value in os.environ.items() if not key.startswith("FLEET_")}
    base.update({"BENCH_REDIS_URL": redis_url, "PYTHONPATH": str(APPS),
                 "FLEET_STATE_DIR": str(workdir / "state"), "PYTHONDONTWRITEBYTECODE": "1"})
    return Env(redis_url, APPS, workdir, Path(sys.executable).parent, base)


def run(args: argparse.Namespace, workdir: Path) -> dict:
    started = time.time()
    load = load_average()
    sys.path.insert(0, str(APPS))
    server = redisserver.start(workdir, dict(os.environ))
    os.environ["BENCH_REDIS_URL"] = server.url  # the task apps read it when imported
    env = make_env(workdir, server.url)
    suite = Suite(args, env)
    only = args.only.split(",")
    progress(f"redis-server {server.version()} on port {server.port}; workdir {workdir}")
    floor = redis_benchmark(server.port, 20000 if args.mode != "quick" else 5000)
    for scenario in ("enqueue", "drain", "roundtrip", "memory"):
        if scenario in only:
            suite.rounds(scenario, getattr(suite, scenario))
    if "ops" in only:
        suite.ops()
    if "dashboard" in only:
        suite.dashboard()
    verdicts = targets.evaluate(dict(suite.metrics))
    if not args.no_profile:
        suite.take_profiles(verdicts)
    import redis

    versions = {"redis-py": redis.__version__}
    for peer in suite.peers:
        versions.update(peer.versions())
    meta = {"mode": args.mode, "args": shown_args(sys.argv[1:]), "sizes": asdict(suite.sizes),
            "started": datetime.datetime.fromtimestamp(started, datetime.UTC).strftime(
                "%Y-%m-%d %H:%M UTC"), "duration_s": time.time() - started,
            "machine": {**machine(load), "load_end": load_average()}, "redis": server.version(),
            "versions": versions, "labels": labels(suite),
            "warning": warning(args), "drain_share": DRAIN_SHARE}
    return {"meta": meta, "floor": floor, "metrics": [m.to_dict() for m in suite.metrics.ordered()],
            "notes": notes(suite), "errors": suite.errors,
            "targets": [asdict(v) for v in verdicts], "profiles": suite.profiles}


def shown_args(argv: list[str]) -> str:
    """The command line for the report, without the --note text (printed on its own)."""
    shown, skip = [], False
    for arg in argv:
        if skip or arg.startswith("--note="):
            skip = False
            continue
        if arg == "--note":
            skip = True
            continue
        shown.append(arg)
    return " ".join(shown)


def labels(suite: Suite) -> dict[str, str]:
    """Display names in table order: fleet, its internal batch row, then the others."""
    names = {peer.name: peer.label for peer in suite.peers}
    return {"fleet": names.pop("fleet"), "fleet-put": "fleet (Transport.put of N, internal API)",
            **names}


def warning(args: argparse.Namespace) -> str | None:
    parts = []
    if args.mode == "quick":
        parts.append("Quick run (bench/run --quick): tiny N, a check of the harness; do not "
                     "quote these figures.")
    if args.note:
        parts.append(args.note)
    return " ".join(parts) or None


def notes(suite: Suite) -> dict[str, str]:
    share = ", ".join(f"{name} drains {int(part * 100)}% of N" for name, part in
                      DRAIN_SHARE.items())
    return {
        "enqueue.batch": "fleet's batched send is the canvas `group(noop.s() for _ in range(N))"
                         ".apply_async()`; the `Transport.put` row is the internal call such a "
                         "send can build on (not a user API), shown for orientation.",
        "drain.off": f"Same N for everyone except: {share} (it forks a process per job). "
                     "Completion is read from each broker's own bookkeeping (fleet: queue "
                     "stats; Celery: list + unacked hash; Huey: queue length; Dramatiq: the "
                     "messages hash; RQ: queue + started registry; bare: a counter).",
        "memory.pss": "Each worker ran one task (`incr`) first, so its children are live.",
        "roundtrip.p50": "fleet on SQLite: a node looks at the SQLite broker every 50 ms (its "
                         "subscription's poll interval) and `get()` backs off from 2 ms "
                         "doubling, which is where its round trip goes; no target applies.",
    }


def interrupted(signum: int, frame: object) -> None:
    """TERM ends a run like Ctrl-C does: the finally blocks stop every process."""
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if args.render:
        args.results.write_text(report.render(json.loads(args.render.read_text())))
        progress(f"wrote {args.results} from {args.render}")
        return 0
    signal.signal(signal.SIGTERM, interrupted)
    signal.signal(signal.SIGINT, interrupted)  # also when started with INT ignored (`cmd &`)
    workdir = Path(tempfile.mkdtemp(prefix="fleet-bench-"))
    ok = False
    try:
        results = run(args, workdir)
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
        raw = args.results.parent / "results" / f"{stamp}-{args.mode}.json"
        raw.parent.mkdir(parents=True, exist_ok=True)
        raw.write_text(json.dumps(results, indent=1) + "\n")
        args.results.write_text(report.render(results))
        progress(f"wrote {args.results} and {raw}")
        ok = True
    except KeyboardInterrupt:
        progress("interrupted: stopping every process this run started")
        return 130
    finally:
        killed = procs.kill_leftovers()
        if killed:
            progress(f"killed {killed} leftover process(es)")
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            progress(f"logs kept in {workdir / 'logs'}")
    return 0
