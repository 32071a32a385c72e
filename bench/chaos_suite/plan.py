"""What a run does, decided up front from a seed: the workload (which task is sent when) and
the fault schedule (which fault when). Pure: no processes, no clock.

Two modes:

* default: 10,000 tasks sent over 100 s with fleet's own heartbeat settings (a heartbeat every
  2 s, dead after 8 s); a node SIGKILLed every 4-8 s and a child every 6-12 s, one node
  frozen (SIGSTOP) until it is declared dead, one broker restart (Redis), one rolling restart.
* short (CI): 1,000 tasks over 24 s, heartbeats every 1 s and dead after 4 s (so a freeze
  costs seconds, not tens of seconds), one fault of each kind.
"""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field

#: The share of each kind of task in the workload (chords come in CHORD_SIZE members).
MIX = {"short": 0.40, "slow": 0.10, "late": 0.15, "eta": 0.10, "chord": 0.20, "flaky": 0.05}
CHORD_SIZE = 20
#: Task names per kind, and whether they are acked late (see chaos_suite.tasks).
TASK_NAMES = {"short": "chaos.short", "slow": "chaos.slow", "late": "chaos.late",
              "eta": "chaos.eta", "member": "chaos.part", "body": "chaos.join",
              "flaky": "chaos.flaky"}
ACKS_LATE = {"late", "member", "body"}  #: and every other ETA task (sent with acks_late)

NODE_KILL, CHILD_KILL, FREEZE = "kill_node", "kill_child", "stop_node"
BROKER_RESTART, ROLLING_RESTART = "restart_broker", "rolling_restart"
FAULT_KINDS = (NODE_KILL, CHILD_KILL, FREEZE, BROKER_RESTART, ROLLING_RESTART)


@dataclass(frozen=True)
class Config:
    """Everything that shapes a run (recorded in its JSON)."""

    mode: str = "default"
    tasks: int = 10_000
    duration: float = 100.0  #: seconds over which the tasks are sent
    seed: int = 1
    nodes: int = 3
    concurrency: int = 2
    heartbeat_interval: float = 2.0  #: fleet's worker_heartbeat_interval
    heartbeat_timeout: float = 8.0  #: fleet's worker_heartbeat_timeout
    #: Seconds between node kills / child kills (uniform in the range); None: one of each.
    node_kill_every: tuple[float, float] | None = (4.0, 8.0)
    child_kill_every: tuple[float, float] | None = (6.0, 12.0)
    broker_down: float = 1.0  #: seconds the broker stays down when restarted
    drain: float = 90.0  #: longest wait for the last results after the last send

    @property
    def recovery_target(self) -> float:
        """Recovery must happen within worker_heartbeat_timeout + 2 s (issue 15)."""
        return self.heartbeat_timeout + 2.0

    @property
    def freeze_limit(self) -> float:
        """Longest a frozen node stays frozen if it is never declared dead."""
        return 3 * (self.heartbeat_timeout + self.heartbeat_interval)


def default_config(**overrides) -> Config:
    return Config(**overrides)


def short_config(**overrides) -> Config:
    values = {"mode": "short", "tasks": 1000, "duration": 24.0, "heartbeat_interval": 1.0,
              "heartbeat_timeout": 4.0, "node_kill_every": None, "child_kill_every": None,
              "drain": 40.0}
    return Config(**{**values, **overrides})


@dataclass(frozen=True)
class Send:
    """One send of the workload: a task, or a chord (members then body in `ids`)."""

    at: float  #: seconds after the run began
    kind: str  #: a key of MIX
    ids: tuple[str, ...]
    countdown: float | None = None  #: eta tasks
    fails: int = 0  #: flaky tasks: how many attempts retry before one succeeds
    number: int = 0  #: the argument (the chord number for chords)
    acks_late: bool = False  #: eta tasks: every other one is sent with acks_late=True


@dataclass(frozen=True)
class PlannedFault:
    at: float
    kind: str


@dataclass
class Plan:
    config: Config
    sends: list[Send] = field(default_factory=list)
    faults: list[PlannedFault] = field(default_factory=list)

    @property
    def task_count(self) -> int:
        """Tasks sent by the producer (chord bodies, sent by the fleet, not included)."""
        return sum(len(s.ids) - (1 if s.kind == "chord" else 0) for s in self.sends)


def counts(total: int) -> dict[str, int]:
    """How many tasks of each kind make `total` (chord members in whole chords; the rest of
    the rounding goes to short tasks)."""
    result = {kind: int(total * share) for kind, share in MIX.items()}
    result["chord"] -= result["chord"] % CHORD_SIZE
    result["short"] += total - sum(result.values())
    return result


def make_plan(config: Config, with_broker_restart: bool) -> Plan:
    rng = random.Random(config.seed)
    plan = Plan(config)
    plan.sends = _workload(config, rng)
    plan.faults = _faults(config, rng, with_broker_restart)
    return plan


def _workload(config: Config, rng: random.Random) -> list[Send]:
    sends = []
    span = config.duration
    for kind, count in counts(config.tasks).items():
        if kind == "chord":
            for number in range(count // CHORD_SIZE):
                ids = tuple(_new_id() for _ in range(CHORD_SIZE + 1))
                sends.append(Send(rng.uniform(0, span * 0.9), kind, ids, number=number))
            continue
        for number in range(count):
            at = rng.uniform(0, span)
            countdown = fails = None
            if kind == "eta":
                # due while the run goes on, often long after the send: held by a node for
                # a while, so a frozen node surely holds some of each ack mode
                at = rng.uniform(0, span * 0.6)
                countdown = rng.uniform(1.0, max(1.5, span * 0.5))
            if kind == "flaky":
                fails = rng.choice((1, 2))
            sends.append(Send(at, kind, (_new_id(),), countdown, fails or 0, number,
                              acks_late=kind == "eta" and number % 2 == 1))
    return sorted(sends, key=lambda s: s.at)


def _new_id() -> str:
    return uuid.uuid4().hex


def _faults(config: Config, rng: random.Random, with_broker_restart: bool
            ) -> list[PlannedFault]:
    span = config.duration
    specials = [PlannedFault(span * 0.35, FREEZE), PlannedFault(span * 0.8, ROLLING_RESTART)]
    if with_broker_restart:
        specials.append(PlannedFault(span * 0.6, BROKER_RESTART))
    # how long each special keeps the fault loop busy (kills are not scheduled inside)
    busy = {FREEZE: config.heartbeat_timeout + 2 * config.heartbeat_interval + 3.0,
            BROKER_RESTART: config.broker_down + config.recovery_target + 5.0,
            ROLLING_RESTART: 8.0}
    stream = []
    for kind, every, first in ((NODE_KILL, config.node_kill_every, 0.12),
                               (CHILD_KILL, config.child_kill_every, 0.22)):
        if every is None:
            stream.append(PlannedFault(span * first, kind))
            continue
        at = rng.uniform(*every)
        while at < span:
            stream.append(PlannedFault(at, kind))
            at += rng.uniform(*every)
    free = [f for f in stream
            if not any(s.at - 1.0 <= f.at <= s.at + busy[s.kind] for s in specials)]
    return sorted(specials + free, key=lambda f: f.at)
