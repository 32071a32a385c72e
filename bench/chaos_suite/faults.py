"""Carrying out the fault schedule, one fault at a time, in the run's main thread.

    kill_node        SIGKILL a random node's main process (its children die with it), then
                     `fleet multi restart <node>`, as an operator or systemd would: fleet
                     multi has no supervisor that respawns nodes by itself.
    kill_child       SIGKILL a random child of a random node (the node replaces it).
    stop_node        SIGSTOP a random node's main process and children (a paused VM, a swap
                     stall), keep it frozen until the broker no longer lists it (another node
                     declared it dead and recovered its reservations) and for longer than
                     worker_heartbeat_timeout, plus one second for the others to take its
                     work, then SIGCONT.
    restart_broker   TERM redis-server (it writes its append-only file), keep it down
                     `broker_down` seconds, start it again on the same port and data; once
                     the recovery target has passed, `fleet inspect ping` every node.
    rolling_restart  `fleet multi restart --rolling`.

Each fault returns a record: {"kind", "t" (epoch), "node", "pid", ..., "t_back" (when
the fault's own action was over), "note"}.

Between faults (and while the harness waits for the last results) `watch()` looks for nodes
that died although nobody killed them: each is recorded as a "crash" (with the time it was
noticed) and started again with `fleet multi restart <node>`, as systemd's Restart= would.
"""

from __future__ import annotations

import contextlib
import random
import signal
import threading
import time
from collections.abc import Callable

import psutil

from chaos_suite import plan as plans
from chaos_suite.monitor import ConsumerMonitor
from chaos_suite.procs import Nodes, RedisServer

#: Margin after a frozen node was declared dead, so the others take its work before it wakes.
FREEZE_MARGIN = 1.0


class FaultRunner:
    def __init__(self, config: plans.Config, nodes: Nodes, monitor: ConsumerMonitor,
                 server: RedisServer | None, gate: threading.Lock):
        self.config = config
        self.nodes = nodes
        self.monitor = monitor
        self.server = server
        self.gate = gate
        self.rng = random.Random(config.seed + 1)
        self.records: list[dict] = []
        self.crashes: list[dict] = []
        self.expected_exits: set[int] = set()  #: pids the harness killed or stopped
        self.known: dict[str, int] = {}  #: the last live main pid seen for each node
        self.broker_down = False  #: while the broker restarts: crashes wait for it
        self._next_watch = 0.0
        self.actions: dict[str, Callable[[], dict]] = {
            plans.NODE_KILL: self.kill_node, plans.CHILD_KILL: self.kill_child,
            plans.FREEZE: self.stop_node, plans.BROKER_RESTART: self.restart_broker,
            plans.ROLLING_RESTART: self.rolling_restart}

    def run(self, faults: list[plans.PlannedFault], started: float,
            halted: Callable[[], bool]) -> list[dict]:
        for fault in faults:
            while time.time() < started + fault.at:
                if halted():
                    return self.records
                self._wait_until(min(started + fault.at, time.time() + 0.2))
            self.watch(now=True)
            try:
                record = self.actions[fault.kind]()
            except psutil.NoSuchProcess as exc:  # the victim exited between choice and signal
                record = {"t": time.time(), "note": f"the victim exited first ({exc})"}
            record.setdefault("kind", fault.kind)
            record["planned_at"] = fault.at
            self.records.append(record)
        return self.records

    def watch(self, now: bool = False) -> None:
        """Record nodes that died on their own (looked at most every 0.2 s) and start them
        again, once the broker is up (a node cannot start without it)."""
        if not now and time.monotonic() < self._next_watch:
            return
        self._next_watch = time.monotonic() + 0.2
        for name in self.nodes.names:
            pid = self.nodes.pid(name)
            if pid is not None:
                self.known[name] = pid
                continue
            lost = self.known.pop(name, None)
            if lost is not None and lost not in self.expected_exits:
                self.crashes.append({"kind": "crash", "t": time.time(), "node": name,
                                     "pid": lost, "t_back": None, "note": ""})
        if self.broker_down:
            return
        for crash in self.crashes:
            if crash["t_back"] is None:
                done = self.nodes.start_one(crash["node"])
                crash.update(t_back=time.time(), note=_last_line(done))

    def _wait_until(self, deadline: float) -> None:
        """Sleep until `deadline` (epoch), watching for crashes meanwhile."""
        while time.time() < deadline:
            self.watch()
            time.sleep(min(0.05, max(0.0, deadline - time.time())))

    def _victim(self) -> tuple[str, int] | None:
        alive = [(name, pid) for name in self.nodes.names
                 if (pid := self.nodes.pid(name)) is not None]
        return self.rng.choice(alive) if alive else None

    def kill_node(self) -> dict:
        victim = self._victim()
        if victim is None:
            return {"t": time.time(), "note": "no node was running"}
        name, pid = victim
        cid = self.monitor.consumer_of(pid)
        self.expected_exits.add(pid)
        t = time.time()
        _signal(psutil.Process(pid), signal.SIGKILL)
        _wait_gone(pid)
        done = self.nodes.start_one(name)
        return {"t": t, "node": name, "pid": pid, "cid": cid, "t_back": time.time(),
                "note": _last_line(done)}

    def kill_child(self) -> dict:
        victim = self._victim()
        if victim is None:
            return {"t": time.time(), "note": "no node was running"}
        name, pid = victim
        children = self.nodes.children(pid)
        if not children:
            return {"t": time.time(), "node": name, "pid": pid, "note": "it had no child"}
        child = self.rng.choice(children)
        t = time.time()
        _signal(child, signal.SIGKILL)
        back, note = None, "no replacement child within 10 s"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            now = self.nodes.children(pid)
            if len(now) >= len(children) and child.pid not in {c.pid for c in now}:
                back, note = time.time(), ""
                break
            if not psutil.pid_exists(pid):
                note = "the node itself died (see crashes)"
                break
            time.sleep(0.02)
        self.watch(now=True)
        return {"t": t, "node": name, "pid": pid, "child": child.pid, "t_back": back,
                "note": note}

    def stop_node(self) -> dict:
        victim = self._victim()
        if victim is None:
            return {"t": time.time(), "note": "no node was running"}
        name, pid = victim
        cid = self.monitor.consumer_of(pid)
        procs = [psutil.Process(pid), *self.nodes.children(pid)]
        t = time.time()
        for proc in procs:
            _signal(proc, signal.SIGSTOP)
        dead = self.monitor.wait_gone(cid, self.config.freeze_limit, self.watch) if cid \
            else None
        if dead is not None:  # frozen longer than the heartbeat timeout, and past its death
            self._wait_until(max(dead, t + self.config.heartbeat_timeout) + FREEZE_MARGIN)
        t_cont = time.time()
        for proc in reversed(procs):
            _signal(proc, signal.SIGCONT)
        note = "" if dead else f"never declared dead within {self.config.freeze_limit:g}s"
        return {"t": t, "node": name, "pid": pid, "cid": cid,
                "children": [p.pid for p in procs[1:]], "t_dead": dead, "t_cont": t_cont,
                "t_back": t_cont, "note": note}

    def restart_broker(self) -> dict:
        if self.server is None:
            return {"t": time.time(), "note": "no broker server to restart (SQLite)"}
        with self.gate:  # no send under way while the server goes away
            self.broker_down = True
            t = time.time()
            self.server.stop()
            t_down = time.time()
            self._wait_until(t_down + self.config.broker_down)
            self.server.start()
            t_up = time.time()
            self.broker_down = False
        # remote control must work again too: every node answers a ping once recovered
        self._wait_until(t_up + self.config.recovery_target)
        answered = self.nodes.ping()
        return {"t": t, "t_down": t_down, "t_up": t_up, "t_back": t_up,
                "answered_ping": answered, "t_ping": time.time(),
                "note": f"port {self.server.port}, appendonly yes"}

    def rolling_restart(self) -> dict:
        self.watch(now=True)
        self.expected_exits.update(self.known.values())
        t = time.time()
        done = self.nodes.multi("restart", "--rolling", timeout=180)
        return {"t": t, "t_back": time.time(), "rc": done.returncode, "note": _last_line(done)}


def _signal(proc: psutil.Process, signum: int) -> None:
    """Signal a process of the fleet; one that exited meanwhile (a recycled child) is fine."""
    with contextlib.suppress(psutil.NoSuchProcess):
        proc.send_signal(signum)


def _wait_gone(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while psutil.pid_exists(pid) and time.monotonic() < deadline:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return
        except psutil.NoSuchProcess:
            return
        time.sleep(0.01)


def _last_line(done) -> str:
    lines = (done.stdout + done.stderr).strip().splitlines()
    return f"exit {done.returncode}: {lines[-1].strip() if lines else ''}"
