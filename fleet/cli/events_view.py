"""`fleet events` without --dump: a live terminal view of the fleet (curses, stdlib).

The view is a pure function of a `FleetState` that folds events in (`FleetState.apply`):
nodes with their status and load, active tasks, rates per task over the last minute, and
recent failures. `render(state, width, height, now)` returns the screen's lines, so it is
tested without a terminal; `run_monitor` only wires the event stream, the keyboard (q quits)
and curses together.
"""

from __future__ import annotations

import collections
import contextlib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fleet.engine.app import Fleet

RATE_WINDOW = 60.0
RECENT_FAILURES = 10
REDRAW_INTERVAL = 0.5


@dataclass
class NodeView:
    name: str
    status: str = "online"
    last_seen: float = 0.0
    active: int = 0
    processed: int = 0
    concurrency: int = 0
    loadavg: list[float] = field(default_factory=list)
    freq: float = 2.0


@dataclass
class TaskView:
    uuid: str
    name: str
    node: str
    started: float
    args: Any = None


@dataclass
class FleetState:
    """What the live view shows, built from events (and an initial list of known nodes)."""

    nodes: dict[str, NodeView] = field(default_factory=dict)
    active: dict[str, TaskView] = field(default_factory=dict)
    finished: dict[str, collections.deque] = field(default_factory=dict)  # name -> times
    failures: collections.deque = field(
        default_factory=lambda: collections.deque(maxlen=RECENT_FAILURES))
    events_seen: int = 0
    #: The latest word from the event stream about the broker (an error, or back again).
    notice: str = ""

    def apply(self, event: dict[str, Any]) -> None:
        self.events_seen += 1
        kind = event.get("type", "")
        stamp = float(event.get("timestamp") or time.time())
        name = event.get("node")
        if kind.startswith("worker-") and name:
            self._worker(kind, name, stamp, event)
        elif kind == "task-started" and event.get("uuid"):
            self.active[event["uuid"]] = TaskView(event["uuid"], event.get("name") or "?",
                                                  name or "?", stamp)
        elif kind in ("task-succeeded", "task-failed", "task-revoked", "task-retried"):
            task = self.active.pop(event.get("uuid"), None)
            task_name = event.get("name") or (task.name if task else "?")
            times = self.finished.setdefault(task_name, collections.deque())
            times.append(stamp)
            if kind == "task-failed":
                self.failures.append((stamp, name or "?", task_name, event.get("uuid"),
                                      str(event.get("exception", ""))))
        if name and name in self.nodes and not kind.startswith("worker-"):
            self.nodes[name].last_seen = max(self.nodes[name].last_seen, stamp)

    def _worker(self, kind: str, name: str, stamp: float, event: dict[str, Any]) -> None:
        node = self.nodes.setdefault(name, NodeView(name))
        node.status = "offline" if kind == "worker-offline" else "online"
        node.last_seen = stamp
        node.active = int(event.get("active") or 0)
        node.processed = int(event.get("processed") or 0)
        node.concurrency = int(event.get("concurrency") or 0)
        node.loadavg = list(event.get("loadavg") or [])
        node.freq = float(event.get("freq") or 2.0)
        if kind == "worker-offline":
            for uuid in [u for u, task in self.active.items() if task.node == name]:
                del self.active[uuid]

    def rate(self, task_name: str, now: float) -> float:
        """Tasks finished per second over the last RATE_WINDOW seconds."""
        times = self.finished.get(task_name, collections.deque())
        while times and times[0] < now - RATE_WINDOW:
            times.popleft()
        return len(times) / RATE_WINDOW


def node_status(node: NodeView, now: float) -> str:
    if node.status == "offline":
        return "offline"
    return "online" if now - node.last_seen <= max(3 * node.freq, 1.0) else "silent"


def render(state: FleetState, width: int, height: int, now: float) -> list[str]:
    """The screen as lines (each at most `width` characters, at most `height` lines)."""
    lines = [f"fleet events  {time.strftime('%H:%M:%S', time.localtime(now))}  "
             f"{len(state.nodes)} node(s), {len(state.active)} active task(s), "
             f"{state.events_seen} event(s)   q: quit", state.notice]
    lines.append(f"{'NODE':<30} {'STATUS':<8} {'ACTIVE':>6} {'DONE':>8} {'LOAD':>6}")
    for node in sorted(state.nodes.values(), key=lambda n: n.name):
        load = f"{node.loadavg[0]:.2f}" if node.loadavg else "-"
        busy = f"{node.active}/{node.concurrency}" if node.concurrency else str(node.active)
        lines.append(f"{node.name:<30} {node_status(node, now):<8} {busy:>6} "
                     f"{node.processed:>8} {load:>6}")
    if not state.nodes:
        lines.append("(no node seen yet: nodes announce themselves every few seconds)")
    lines += ["", f"{'ACTIVE TASK':<40} {'NODE':<24} {'RUNNING':>8}"]
    for task in sorted(state.active.values(), key=lambda t: t.started):
        lines.append(f"{task.name + '[' + task.uuid[:8] + ']':<40} {task.node:<24} "
                     f"{max(0.0, now - task.started):>7.1f}s")
    if not state.active:
        lines.append("(none; task events need nodes started with -E)")
    lines += ["", f"{'TASK':<40} {'PER MIN':>8}"]
    rates = sorted(((name, state.rate(name, now) * 60) for name in state.finished),
                   key=lambda item: -item[1])
    lines += [f"{name:<40} {per_minute:>8.0f}" for name, per_minute in rates if per_minute]
    lines += ["", "RECENT FAILURES"]
    for stamp, node, name, uuid, exception in reversed(state.failures):
        lines.append(f"{time.strftime('%H:%M:%S', time.localtime(stamp))} {node} "
                     f"{name}[{uuid}] {exception}")
    if not state.failures:
        lines.append("(none)")
    return [line[:width] for line in lines[:height]]


def run_monitor(app: Fleet) -> None:  # pragma: no cover - needs a terminal
    """The curses loop: fold events in, redraw every half second, q quits."""
    import curses

    from fleet.engine.events import listen
    from fleet.inspect import known_nodes

    state = FleetState()
    for seen in known_nodes(app):
        state.nodes[seen.name] = NodeView(
            seen.name, "online", seen.last_heartbeat, int(seen.info.get("active") or 0),
            int(seen.info.get("processed") or 0), int(seen.info.get("concurrency") or 0),
            list(seen.info.get("loadavg") or []), float(seen.info.get("freq") or 2.0))

    def main(screen: Any) -> None:
        curses.curs_set(0)
        screen.nodelay(True)
        last_draw = 0.0
        def notice(text: str) -> None:
            state.notice = f"{time.strftime('%H:%M:%S')} {text}"

        for event in listen(app, notice=notice):
            if event is not None:
                state.apply(event)
            if screen.getch() in (ord("q"), ord("Q"), 27):
                return
            now = time.time()
            if now - last_draw >= REDRAW_INTERVAL:
                last_draw = now
                height, width = screen.getmaxyx()
                screen.erase()
                for row, line in enumerate(render(state, width - 1, height, now)):
                    with contextlib.suppress(curses.error):  # a terminal shrunk meanwhile
                        screen.addstr(row, 0, line)
                screen.refresh()

    with contextlib.suppress(KeyboardInterrupt):
        curses.wrapper(main)
