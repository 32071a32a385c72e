"""Remote control: the one registry of commands, and the node's mailbox that runs them.

Both ends read the same registry (`COMMANDS`): the node dispatches from it, and the client
(fleet/inspect.py) and the CLI (fleet/cli_remote.py) build their argument checks, `--list`
and `--help` from it. Each command declares its kind (inspect: read-only; control: changes
the node), its typed arguments, a help line and a default timeout.

The wire (JSON over the broker's broadcast channels, so it works on every transport):

    request, on channel "control":
        {"v": 1, "ticket": "<hex>", "command": "ping", "arguments": {...},
         "destination": ["w1@host", ...] or null (every node), "deadline": <epoch>,
         "reply": true}
    reply, on channel "reply.<ticket>" (the client subscribed before it published):
        {"ticket": "<hex>", "node": "w1@host", "ok": <value>}  or  {..., "error": "<text>"}

A node answers from its main loop (a hook on the node's "broadcast" event), so it answers
while every child is busy. It ignores requests for other nodes and requests whose deadline
passed (the client stopped listening) by more than CLOCK_SKEW_GRACE, since the deadline is
the client's clock. Side effects that would stop the node from replying (shutdown) run after
the reply is published.

Revokes are durable: `revoked:<task id>` values in the broker, with an expiry
(`task_revoke_expires`), and a counter `revoked.version` bumped on every revoke. A node
loads them all when it becomes ready and reloads when the counter changed (checked every
heartbeat), so a node started later, or every node restarted, still refuses revoked tasks.

This module imports only the standard library at load time: the CLI imports the registry
on every start.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fleet.operator_errors import FleetError, UsageError
from fleet.signals import parse_signal, signal_name

if TYPE_CHECKING:
    from fleet.engine.worker import Job, Node

log = logging.getLogger("fleet.control")

WIRE_VERSION = 1
CONTROL_CHANNEL = "control"
EVENTS_CHANNEL = "events"
REVOKE_PREFIX = "revoked:"
REVOKE_VERSION_KEY = "revoked.version"
DEFAULT_TIMEOUT = 1.0
#: A request is still answered this long after its deadline: the deadline is the client's
#: wall clock, and hosts' clocks differ (a node a second ahead would ignore every request).
CLOCK_SKEW_GRACE = 5.0

INSPECT, CONTROL = "inspect", "control"
#: Signals that stop a task in a pool child (the others are ignored or handled there).
TERMINATE_SIGNALS = ("TERM", "KILL", "HUP", "ABRT", "ALRM")


def reply_channel(ticket: str) -> str:
    return f"reply.{ticket}"


class CommandError(Exception):
    """A command that could not do what was asked: sent back as the node's error reply."""


# == the registry =================================================================================

@dataclass(frozen=True)
class Arg:
    """One argument of a command: its name, type and help.

    Types: "str", "int", "float", "bool", "rate" ('10/s'), "signal" (TERM, SIGTERM or 15;
    one that stops a task in a pool child, see TERMINATE_SIGNALS).
    `many` takes one or more values (a list); an argument with a default is optional.
    """

    name: str
    type: str
    help: str
    many: bool = False
    default: Any = ...

    @property
    def required(self) -> bool:
        return self.default is ...

    def usage(self) -> str:
        text = self.name.upper() + ("..." if self.many else "")
        return text if self.required else f"[{text}]"


@dataclass(frozen=True)
class Command:
    name: str
    kind: str  #: INSPECT (read-only) or CONTROL (changes the node)
    help: str
    handler: Callable[..., Any]
    args: tuple[Arg, ...] = ()
    timeout: float = DEFAULT_TIMEOUT

    def signature(self) -> str:
        return " ".join([self.name, *(arg.usage() for arg in self.args)])


COMMANDS: dict[str, Command] = {}


def command(kind: str, *args: Arg, timeout: float = DEFAULT_TIMEOUT) -> Callable:
    """Register the decorated handler `handler(mailbox, **arguments)` under its name.

    The first line of its docstring is the command's help.
    """

    def register(handler: Callable[..., Any]) -> Callable[..., Any]:
        name = handler.__name__.removeprefix("do_")
        doc = (handler.__doc__ or "").strip().splitlines()
        COMMANDS[name] = Command(name, kind, doc[0] if doc else "", handler, args, timeout)
        return handler

    return register


def commands_of(kind: str) -> list[Command]:
    return [cmd for cmd in COMMANDS.values() if cmd.kind == kind]


def get_command(name: str, kind: str | None = None) -> Command:
    """The command `name` (of `kind`), or a CommandError naming the closest one."""
    found = COMMANDS.get(name)
    if found is not None and (kind is None or found.kind == kind):
        return found
    from fleet.operator_errors import closest

    names = [cmd.name for cmd in COMMANDS.values() if kind is None or cmd.kind == kind]
    if found is not None:
        raise CommandError(f"{name} is a{'n' if found.kind == INSPECT else ''} {found.kind} "
                           f"command: use `fleet {found.kind} {name}`")
    hint = closest(name, names)
    raise CommandError(f"unknown {kind or 'remote'} command {name!r}" +
                       (f"; did you mean {hint!r}?" if hint else
                        f"; known: {', '.join(sorted(names))}"))


# -- typed arguments -----------------------------------------------------------------------------

def signal_number(value: Any) -> int:
    """TERM, SIGTERM, sigterm or 15 -> 15; anything else raises ValueError (for a converter)."""
    try:
        return int(parse_signal(value))
    except UsageError as exc:
        raise ValueError(exc.one_line()) from None


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError("expected a non-empty text")
    return value


def _whole(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("expected a whole number")
    try:
        return int(value)
    except (ValueError, TypeError):  # int()'s own message speaks Python, not operator
        raise ValueError("expected a whole number such as 2") from None


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number")
    try:
        return float(value)
    except (ValueError, TypeError):
        raise ValueError("expected a number of seconds such as 1.5") from None


def _flag(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise ValueError("expected true or false")


def _rate(value: Any) -> str | float:
    from fleet.engine.ratelimit import parse_rate

    if isinstance(value, bool):
        raise ValueError("expected a rate such as 10/s")
    parse_rate(value)  # raises ConfigError on a bad rate
    return value


def _stopping_signal(value: Any) -> str:
    label = signal_name(signal_number(value))
    if label not in TERMINATE_SIGNALS:
        raise ValueError(f"SIG{label} does not stop a task in a pool child (children ignore "
                         "or handle it): use TERM (raises Terminated in the task) or KILL")
    return label


_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "str": _text, "int": _whole, "float": _number, "bool": _flag, "rate": _rate,
    "signal": _stopping_signal,
}


def check_arguments(cmd: Command, arguments: dict[str, Any] | None) -> dict[str, Any]:
    """Validate and convert `arguments` for `cmd` (missing optional ones get their default).

    Raises CommandError with what was wrong and what `cmd` expects.
    """

    arguments = dict(arguments or {})
    unknown = sorted(set(arguments) - {arg.name for arg in cmd.args})
    if unknown:
        raise CommandError(f"{cmd.name} takes no argument {unknown[0]!r} "
                           f"(usage: {cmd.signature()})")
    checked: dict[str, Any] = {}
    for arg in cmd.args:
        value = arguments.get(arg.name)
        if value is None or (arg.many and not value):
            if arg.required:
                raise CommandError(f"{cmd.name} needs {arg.name.upper()} "
                                   f"(usage: {cmd.signature()})")
            checked[arg.name] = arg.default
            continue
        values = value if arg.many else [value]
        if arg.many and not isinstance(value, list | tuple):
            values = [value]
        try:
            converted = [_CONVERTERS[arg.type](item) for item in values]
        except (ValueError, TypeError, FleetError) as exc:
            text = exc.one_line() if isinstance(exc, FleetError) else str(exc)
            raise CommandError(f"{cmd.name}: bad {arg.name.upper()} {value!r}: {text}") from None
        checked[arg.name] = converted if arg.many else converted[0]
    return checked


def parse_command_line(cmd: Command, words: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """Positional words from the command line -> checked arguments for `cmd`."""
    words = list(words)
    arguments: dict[str, Any] = {}
    for arg in cmd.args:
        if arg.many:
            arguments[arg.name], words = words, []
        elif words:
            arguments[arg.name] = words.pop(0)
    if words:
        raise CommandError(f"{cmd.name}: unexpected {' '.join(words)!r} "
                           f"(usage: {cmd.signature()})")
    return check_arguments(cmd, arguments)


# == the node's mailbox ===========================================================================

@dataclass
class Mailbox:
    """A node's end of remote control: answers requests, keeps the revoke list current."""

    node: Node
    events: Any = None  #: the node's EventSender (fleet.engine.events)
    revokes_version: str | None = None
    _after_reply: list[Callable[[], None]] = field(default_factory=list)
    _durable: set[str] = field(default_factory=set)  #: revoked ids last loaded from the broker

    # -- requests ------------------------------------------------------------------------------

    def on_broadcast(self, node: Node, channel: str, payload: str) -> None:
        if channel != CONTROL_CHANNEL:
            return
        try:
            request = json.loads(payload)
            name = request["command"]
        except (ValueError, KeyError, TypeError):
            log.warning("%s: ignored an unreadable control request: %.200r", node.name, payload)
            return
        destination = request.get("destination")
        if destination and node.name not in destination:
            return
        late = time.time() - float(request.get("deadline") or "inf")
        if late > CLOCK_SKEW_GRACE:
            log.warning("%s: ignored control request %r: its deadline passed %.1fs ago (the "
                        "client stopped waiting; if this repeats, check that this host's clock "
                        "agrees with the client's)", node.name, name, late)
            return
        reply = self.run(name, request.get("arguments"))
        try:
            ticket = request.get("ticket")
            if ticket and request.get("reply", True):
                body = {"ticket": ticket, "node": node.name, **reply}
                node.broker.publish(reply_channel(ticket), json.dumps(body, default=repr))
        finally:
            actions, self._after_reply = self._after_reply, []
            for action in actions:
                action()

    def run(self, name: str, arguments: dict | None) -> dict[str, Any]:
        """Run one command here; {"ok": value} or {"error": text}."""
        try:
            cmd = get_command(name)
            checked = check_arguments(cmd, arguments)
            log.log(logging.INFO if cmd.kind == CONTROL else logging.DEBUG, "%s: remote %s %s",
                    self.node.name, name, " ".join(f"{k}={v}" for k, v in checked.items()))
            return {"ok": cmd.handler(self, **checked)}
        except CommandError as exc:
            log.warning("%s: remote %s refused: %s", self.node.name, name, exc)
            return {"error": str(exc)}
        except Exception as exc:  # a bug in a handler must not take the node down
            log.exception("%s: remote %s failed", self.node.name, name)
            return {"error": f"{type(exc).__name__}: {exc}"}

    def after_reply(self, action: Callable[[], None]) -> None:
        """Run `action` once the reply is sent (things that would prevent the reply)."""
        self._after_reply.append(action)

    # -- durable revokes -----------------------------------------------------------------------

    def load_revokes(self, node: Node | None = None) -> None:
        """Add the broker's revokes to the node's set (ids revoked by a bare broadcast stay),
        and drop those loaded before that expired since (the set would grow forever)."""
        broker = self.node.broker
        version = broker.get_value(REVOKE_VERSION_KEY)
        stored = {key[len(REVOKE_PREFIX):] for key in broker.values_with_prefix(REVOKE_PREFIX)}
        self.revokes_version = version
        revoked = self.node.revoked
        added = len(stored - revoked)
        revoked -= self._durable - stored
        revoked |= stored
        self._durable = stored
        if added:
            log.info("%s: %d revoked task id(s) loaded from the broker", self.node.name, added)

    def refresh_revokes(self, node: Node | None = None) -> None:
        """Reload when another client revoked something since (one read per heartbeat)."""
        if self.node.broker.get_value(REVOKE_VERSION_KEY) != self.revokes_version:
            self.load_revokes()


def store_revokes(broker: Any, ids: list[str], expires: float, signal: str | None = None
                  ) -> None:
    """Make revokes durable: every node, now or started later, refuses these ids."""
    from fleet.engine.transport.base import StoredResult

    value = json.dumps({"at": time.time(), "signal": signal})
    broker.set_values([StoredResult(REVOKE_PREFIX + task_id, value, expires)
                       for task_id in ids])
    broker.incr(REVOKE_VERSION_KEY, 1, ttl=expires)


def attach(node: Node) -> Mailbox:
    """Give `node` its mailbox and its event sender (call before `node.run()`)."""
    from fleet.engine import events

    mailbox = Mailbox(node, events=events.attach(node))
    node.channels.append(CONTROL_CHANNEL)
    node.hooks["broadcast"].append(mailbox.on_broadcast)
    node.hooks["ready"].insert(0, mailbox.load_revokes)
    node.hooks["heartbeat"].append(mailbox.refresh_revokes)
    return mailbox


# == what a node reports about its tasks ===========================================================

def job_info(node: Node, job: Job) -> dict[str, Any]:
    msg = job.message
    delivery = job.delivery
    info: dict[str, Any] = {
        "id": msg.id, "name": msg.task, "args": msg.args, "kwargs": msg.kwargs,
        "hostname": node.name, "queue": delivery.queue, "priority": delivery.priority,
        "redelivered": delivery.redelivered, "retries": msg.retries, "eta": msg.eta,
        "expires": msg.expires, "acknowledged": False, "time_start": None, "worker_pid": None,
    }
    if job.started is not None:
        info["time_start"] = time.time() - (time.monotonic() - job.started)
        info["worker_pid"] = job.child.pid if job.child is not None else None
        info["acknowledged"] = not job.acks_late
        info["time_limits"] = [job.soft_limit, job.hard_limit]
    return info


def _all_jobs(node: Node) -> list[tuple[str, Job]]:
    return ([("active", job) for job in node.active.values()] +
            [("reserved", job) for job in node.buffer] +
            [("scheduled", job) for _, _, job in node.scheduled])


def _task(node: Node, name: str) -> Any:
    task = node.app.tasks.get(name)
    if task is None:
        from fleet.operator_errors import closest

        hint = closest(name, list(node.app.tasks))
        raise CommandError(f"unknown task {name!r}" +
                           (f"; did you mean {hint!r}?" if hint else ""))
    return task


# == inspect commands ==============================================================================

@command(INSPECT)
def do_ping(mailbox: Mailbox) -> str:
    """Answer pong (the node is up and its main loop responds)."""
    return "pong"


@command(INSPECT)
def do_active(mailbox: Mailbox) -> list[dict]:
    """Tasks running now: id, name, args, child pid, start time."""
    node = mailbox.node
    return [job_info(node, job) for job in node.active.values()]


@command(INSPECT)
def do_reserved(mailbox: Mailbox) -> list[dict]:
    """Tasks prefetched by the node, waiting for a free child (or their rate limit)."""
    node = mailbox.node
    waiting = [job for jobs in node.throttled.values() for job in jobs]
    return [job_info(node, job) for job in [*node.buffer, *waiting]]


@command(INSPECT)
def do_scheduled(mailbox: Mailbox) -> list[dict]:
    """ETA/countdown tasks the node holds until they are due."""
    node = mailbox.node
    return [{"eta": eta, "priority": job.delivery.priority, "request": job_info(node, job)}
            for eta, _, job in sorted(node.scheduled, key=lambda item: item[:2])]


@command(INSPECT)
def do_revoked(mailbox: Mailbox) -> list[str]:
    """Ids of revoked tasks this node refuses (durable revokes included)."""
    return sorted(mailbox.node.revoked)


@command(INSPECT)
def do_registered(mailbox: Mailbox) -> list[str]:
    """The tasks this node can run, with their rate and time limits."""
    node = mailbox.node
    lines = []
    for name in sorted(node.app.tasks):
        task = node.app.tasks[name]
        extras = [f"{attr}={getattr(task, attr)}" for attr in
                  ("rate_limit", "time_limit", "soft_time_limit", "queue")
                  if getattr(task, attr, None) is not None]
        lines.append(" ".join([name, *extras]) if extras else name)
    return lines


@command(INSPECT)
def do_stats(mailbox: Mailbox) -> dict[str, Any]:
    """Pid, uptime, pool, tasks done per name, prefetch, broker, resource usage."""
    import os
    import resource

    from fleet.engine.transport import mask_url, scheme_of

    node = mailbox.node
    options = node.options
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "pid": os.getpid(),
        "hostname": node.name,
        "uptime": round(time.time() - node.started_at, 3),
        "state": node.state,
        "pool": {
            "implementation": "prefork",
            "max-concurrency": options.concurrency,
            "processes": node.pool.pids() if node.pool else [],
            "max-tasks-per-child": options.max_tasks_per_child,
            "max-memory-per-child": options.max_memory_per_child,
            "timeouts": [options.soft_time_limit or node.conf.task_soft_time_limit,
                         options.time_limit or node.conf.task_time_limit],
        },
        "total": dict(node.processed),
        "active": len(node.active),
        "prefetch_count": node.prefetch_limit,
        "queues": list(node.queues),
        "events": bool(options.send_events),
        "broker": {"url": mask_url(node.app.broker_url),
                   "transport": scheme_of(node.app.broker_url)},
        "rusage": {"utime": usage.ru_utime, "stime": usage.ru_stime,
                   "maxrss_kib": usage.ru_maxrss, "children_utime": children.ru_utime,
                   "children_stime": children.ru_stime,
                   "children_maxrss_kib": children.ru_maxrss},
    }


@command(INSPECT)
def do_active_queues(mailbox: Mailbox) -> list[dict]:
    """The queues this node consumes."""
    return [{"name": queue} for queue in mailbox.node.queues]


@command(INSPECT, Arg("ids", "str", "Task ids.", many=True))
def do_query_task(mailbox: Mailbox, ids: list[str]) -> dict[str, list]:
    """What this node knows of these task ids: active, reserved or scheduled."""
    node = mailbox.node
    wanted = set(ids)
    return {job.message.id: [where, job_info(node, job)] for where, job in _all_jobs(node)
            if job.message.id in wanted}


@command(INSPECT, Arg("include_defaults", "bool", "Every setting, not only changed ones.",
                      default=False))
def do_conf(mailbox: Mailbox, include_defaults: bool) -> dict[str, Any]:
    """The node's effective settings (secrets masked)."""
    return mailbox.node.conf.masked(only_changed=not include_defaults)


@command(INSPECT)
def do_report(mailbox: Mailbox) -> str:
    """Versions, platform and settings of the node, like `fleet report`."""
    from fleet.report import build_report, format_report

    return format_report(build_report(mailbox.node.app, mailbox.node.app.main))


# == control commands ==============================================================================

@command(CONTROL)
def do_enable_events(mailbox: Mailbox) -> str:
    """Start sending task events (like `fleet worker -E`)."""
    options = mailbox.node.options
    if options.send_events:
        return "task events already enabled"
    options.send_events = True
    return "task events enabled"


@command(CONTROL)
def do_disable_events(mailbox: Mailbox) -> str:
    """Stop sending task events (worker events continue)."""
    options = mailbox.node.options
    if not options.send_events:
        return "task events already disabled"
    options.send_events = False
    return "task events disabled"


@command(CONTROL)
def do_heartbeat(mailbox: Mailbox) -> str:
    """Send a worker-heartbeat event now."""
    if mailbox.events is not None:
        mailbox.events.worker("worker-heartbeat")
    return "heartbeat sent"


@command(CONTROL, Arg("task", "str", "Task name."),
         Arg("rate", "rate", "Tasks per node: 10/s, 100/m, 1000/h, or 0 for no limit."))
def do_rate_limit(mailbox: Mailbox, task: str, rate: str) -> str:
    """Change a task's rate limit on the node (later tasks)."""
    from fleet.engine.ratelimit import parse_rate

    found = _task(mailbox.node, task)
    found.rate_limit = str(rate) if parse_rate(rate) else None
    mailbox.node.set_rate_limit(found, found.rate_limit)
    return f"rate limit of {task} set to {rate}" if found.rate_limit else \
        f"rate limit of {task} disabled"


@command(CONTROL, Arg("task", "str", "Task name."),
         Arg("soft", "float", "Soft time limit in seconds (0: none)."),
         Arg("hard", "float", "Hard time limit in seconds (0: none).", default=None))
def do_time_limit(mailbox: Mailbox, task: str, soft: float, hard: float | None) -> str:
    """Change a task's soft and hard time limits on the node (tasks started later)."""
    found = _task(mailbox.node, task)
    if soft < 0 or (hard is not None and hard < 0):
        raise CommandError("time limits cannot be negative")
    if hard and soft and soft >= hard:
        raise CommandError(f"the soft limit ({soft:g}s) must be below the hard one ({hard:g}s)")
    found.soft_time_limit = soft or None
    if hard is not None:
        found.time_limit = hard or None
    return f"time limits of {task} set: soft={found.soft_time_limit} hard={found.time_limit}"


def _refuse_held(node: Node, ids: list[str]) -> list[str]:
    """Settle revoked tasks this node holds but has not started (prefetched or waiting for
    their ETA) now, as REVOKED, instead of when they would have been due."""
    import heapq

    wanted = set(ids)
    held = [job for job in node.buffer if job.message.id in wanted]
    for job in held:
        node.buffer.remove(job)
    waiting = [entry for entry in node.scheduled if entry[2].message.id in wanted]
    if waiting:
        node.scheduled[:] = [entry for entry in node.scheduled if entry not in waiting]
        heapq.heapify(node.scheduled)
    jobs = held + [entry[2] for entry in waiting]
    for job in jobs:
        node._refuse(job)
    return [job.message.id for job in jobs]


@command(CONTROL, Arg("ids", "str", "Task ids.", many=True))
def do_revoke(mailbox: Mailbox, ids: list[str]) -> str:
    """Never run these tasks (durable: nodes started later refuse them too)."""
    mailbox.node.revoked.update(ids)
    _refuse_held(mailbox.node, ids)
    return f"tasks {', '.join(ids)} flagged as revoked"


@command(CONTROL, Arg("signal", "signal", "Signal for the running task: TERM, KILL, ..."),
         Arg("ids", "str", "Task ids.", many=True))
def do_terminate(mailbox: Mailbox, signal: str, ids: list[str]) -> str:
    """Revoke these tasks and kill the running ones with SIGNAL."""
    node = mailbox.node
    node.revoked.update(ids)
    _refuse_held(node, ids)
    number = signal_number(signal)
    hit = []
    for job in list(node.active.values()):
        if job.message.id in ids and job.child is not None:
            job.terminate = number
            node.pool.kill(job.child, number)
            hit.append(job.message.id)
            log.warning("%s: terminating %s with SIG%s (remote request)", node.name,
                        job.label, signal)
    if not hit:
        return f"tasks {', '.join(ids)} flagged as revoked; none was running here"
    return f"terminated {', '.join(hit)} with SIG{signal}"


@command(CONTROL, Arg("queue", "str", "Queue name."))
def do_add_consumer(mailbox: Mailbox, queue: str) -> str:
    """Start consuming from QUEUE."""
    node = mailbox.node
    if queue in node.queues:
        return f"already consuming from {queue}"
    node.set_queues([*node.queues, queue])
    return f"now consuming from {queue}"


@command(CONTROL, Arg("queue", "str", "Queue name."))
def do_cancel_consumer(mailbox: Mailbox, queue: str) -> str:
    """Stop consuming from QUEUE (tasks already reserved still run)."""
    node = mailbox.node
    if queue not in node.queues:
        raise CommandError(f"not consuming from {queue} (queues: {', '.join(node.queues)})")
    if len(node.queues) == 1:
        raise CommandError(f"{queue} is the only queue of {node.name}: add another first, "
                           "or shut the node down")
    node.set_queues([name for name in node.queues if name != queue])
    return f"no longer consuming from {queue}"


def _refusable(action: Callable[..., Any], *args: Any) -> Any:
    """Call a node method that refuses with a FleetError (a size outside the autoscale range,
    a bad range); the refusal becomes the command's error reply."""
    try:
        return action(*args)
    except FleetError as exc:
        raise CommandError(exc.one_line()) from None


@command(CONTROL, Arg("n", "int", "Children to add (default 1).", default=1))
def do_pool_grow(mailbox: Mailbox, n: int) -> str:
    """Add N children to the pool (within the autoscale range, if one is set)."""
    node = mailbox.node
    if n < 1:
        raise CommandError("N must be at least 1")
    _refusable(node.grow, n, "pool_grow")
    return f"pool will grow to {node.options.concurrency}"


@command(CONTROL, Arg("n", "int", "Children to remove (default 1).", default=1))
def do_pool_shrink(mailbox: Mailbox, n: int) -> str:
    """Remove N children from the pool (busy ones finish their task first)."""
    node = mailbox.node
    if n < 1:
        raise CommandError("N must be at least 1")
    if node.autoscaler is None and node.options.concurrency <= 1:
        raise CommandError("the pool has one child already: it cannot shrink further")
    _refusable(node.shrink, n, "pool_shrink")
    return f"pool will shrink to {node.options.concurrency}"


@command(CONTROL, Arg("max", "int", "Most children."), Arg("min", "int", "Fewest children."))
def do_autoscale(mailbox: Mailbox, max: int, min: int) -> str:
    """Set the pool's autoscale range (children between MIN and MAX); turns autoscaling on
    for a node started without --autoscale."""
    from fleet.engine.autoscale import Autoscaler

    node = mailbox.node
    if min < 0 or max < 1 or max < min:
        raise CommandError(f"need 0 <= MIN <= MAX and MAX >= 1 (got MAX={max} MIN={min})")
    if node.autoscaler is None:
        Autoscaler(node, max, min, node.conf.worker_autoscale_keepalive).attach()
    return _refusable(node.autoscaler.update, max, min)


@command(CONTROL)
def do_pool_restart(mailbox: Mailbox) -> str:
    """Replace every child (busy ones after their task): picks up changed code on disk."""
    node = mailbox.node
    for child in list(node.pool.children.values()):
        if child.retiring is None:
            child.retiring = "pool restart"
        if child.job is None:
            node.pool.retire(child)
    return f"restarting {len(node.pool.children)} children"


@command(CONTROL)
def do_shutdown(mailbox: Mailbox) -> str:
    """Warm shutdown: stop consuming, let running tasks finish, exit."""
    from fleet.engine.worker import WARM

    node = mailbox.node
    mailbox.after_reply(lambda: node.begin_shutdown(WARM, "remote shutdown"))
    return "shutting down"
