"""Remote control on a node: its mailbox, and the handler of every command in the registry.

The commands, their arguments and the wire are declared once in `fleet.engine.commands`
(both ends read it; its names stay importable from here). A node answers from its main loop
(a hook on the node's "broadcast" event), so it answers while every child is busy. It
ignores requests for other nodes and requests whose deadline passed (the client stopped
listening) by more than CLOCK_SKEW_GRACE. Side effects that would stop the node from
replying (shutdown) run after the reply is published.

Revokes are durable (see `fleet.engine.commands`): a node loads the newest when it becomes
ready and, at every heartbeat, those stored since (`fleet.engine.node.revokes`), so a node
started later, or every node restarted, still refuses revoked tasks. A node keeps at most
`worker_revokes_max` revoked ids, each until its revoke expires.

This module imports only the standard library and the registry at load time: the CLI
imports the registry through it on every start.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fleet.engine.commands import (
    CLOCK_SKEW_GRACE,
    COMMANDS,
    CONTROL,
    CONTROL_CHANNEL,
    DEFAULT_TIMEOUT,
    EVENTS_CHANNEL,
    INSPECT,
    REVOKE_PREFIX,
    REVOKE_VERSION_KEY,
    REVOKED_PAGE_MAX,
    TERMINATE_SIGNALS,
    WIRE_VERSION,
    Arg,
    Command,
    CommandError,
    check_arguments,
    commands_of,
    decode_request,
    get_command,
    parse_command_line,
    reply_channel,
    signal_number,
    store_revokes,
)
from fleet.operator_errors import FleetError, closest

if TYPE_CHECKING:
    from fleet.engine.node.jobs import Job
    from fleet.engine.worker import Node

#: The registry's names, importable from here as before.
__all__ = ["CLOCK_SKEW_GRACE", "COMMANDS", "CONTROL", "CONTROL_CHANNEL", "DEFAULT_TIMEOUT",
           "EVENTS_CHANNEL", "HANDLERS", "INSPECT", "REVOKE_PREFIX", "REVOKE_VERSION_KEY",
           "TERMINATE_SIGNALS", "WIRE_VERSION", "Arg", "Command", "CommandError", "Mailbox",
           "attach", "check_arguments", "commands_of", "get_command", "job_info",
           "parse_command_line", "reply_channel", "signal_number", "store_revokes"]

log = logging.getLogger("fleet.control")


# == the node's mailbox ===========================================================================

@dataclass
class Mailbox:
    """A node's end of remote control: answers requests, keeps the revoke list current."""

    node: Node
    events: Any = None  #: the node's EventSender (fleet.engine.event_sender)
    _after_reply: list[Callable[[], None]] = field(default_factory=list)
    durable: Any = field(init=False)  #: the node's DurableRevokes

    def __post_init__(self) -> None:
        from fleet.engine.node.revokes import DurableRevokes  # (the CLI imports this module)

        self.durable = DurableRevokes(self.node)

    # -- requests ------------------------------------------------------------------------------

    def on_broadcast(self, node: Node, channel: str, payload: str) -> None:
        if channel != CONTROL_CHANNEL:
            return
        try:
            request = decode_request(payload)
        except CommandError as exc:
            log.warning("%s: ignored an unreadable control request (%s): %.200r", node.name,
                        exc, payload)
            return
        name, destination = request.command, request.destination
        if destination and node.name not in destination:
            return
        late = time.time() - (request.deadline if request.deadline is not None else math.inf)
        if late > CLOCK_SKEW_GRACE:
            log.warning("%s: ignored control request %.100r: its deadline passed %.1fs ago "
                        "(the client stopped waiting; if this repeats, check that this host's "
                        "clock agrees with the client's)", node.name, name, late)
            return
        reply = self.run(name, request.arguments)
        try:
            ticket = request.ticket
            if ticket and request.reply:
                body = {"ticket": ticket, "node": node.name, **reply}
                node.consumer.broker.publish(reply_channel(ticket),
                                             json.dumps(body, default=repr))
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
            return {"ok": HANDLERS[cmd.name](self, **checked)}
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
        """Add the broker's newest revokes to the node's set (when it becomes ready)."""
        self.durable.load()

    def refresh_revokes(self, node: Node | None = None) -> None:
        """Add what was revoked since (one read per heartbeat when nothing was), and forget
        the ids whose revoke expired."""
        self.node.jobs.revoked.purge()
        self.durable.refresh()

    def revoke_locally(self, ids: list[str]) -> None:
        """Refuse these ids here, for as long as a durable revoke lasts."""
        self.node.jobs.revoked.update(ids, time.time() + self.node.conf.task_revoke_expires)


def attach(node: Node) -> Mailbox:
    """Give `node` its mailbox and its event sender (call before `node.run()`)."""
    from fleet.engine import event_sender

    mailbox = Mailbox(node, events=event_sender.attach(node))
    node.consumer.channels.append(CONTROL_CHANNEL)
    node.hooks["broadcast"].append(mailbox.on_broadcast)
    node.hooks["ready"].insert(0, mailbox.load_revokes)
    node.hooks["heartbeat"].append(mailbox.refresh_revokes)
    return mailbox


# == the handlers =================================================================================

#: Command name -> handler(mailbox, **checked arguments); one for every declared command.
HANDLERS: dict[str, Callable[..., Any]] = {}


def handles(handler: Callable[..., Any]) -> Callable[..., Any]:
    """Make `do_<name>` the node's handler of the declared command <name>."""
    name = handler.__name__.removeprefix("do_")
    if name not in COMMANDS:
        raise LookupError(f"{handler.__name__} handles no declared command: declare {name!r} "
                          "in fleet.engine.commands")
    HANDLERS[name] = handler
    return handler


def job_info(node: Node, job: Job) -> dict[str, Any]:
    """What a node reports about one of its jobs (active, reserved, scheduled, query_task)."""
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


def _task(node: Node, name: str) -> Any:
    task = node.app.tasks.get(name)
    if task is None:
        hint = closest(name, list(node.app.tasks))
        raise CommandError(f"unknown task {name!r}" +
                           (f"; did you mean {hint!r}?" if hint else ""))
    return task


# -- inspect -----------------------------------------------------------------------------------

@handles
def do_ping(mailbox: Mailbox) -> str:
    return "pong"


@handles
def do_active(mailbox: Mailbox) -> list[dict]:
    node = mailbox.node
    return [job_info(node, job) for job in node.jobs.active.values()]


@handles
def do_reserved(mailbox: Mailbox) -> list[dict]:
    node = mailbox.node
    return [job_info(node, job) for job in [*node.jobs.buffer, *node.jobs.waiting()]]


@handles
def do_scheduled(mailbox: Mailbox) -> list[dict]:
    node = mailbox.node
    return [{"eta": eta, "priority": job.delivery.priority, "request": job_info(node, job)}
            for eta, _, job in sorted(node.jobs.scheduled, key=lambda item: item[:2])]


@handles
def do_revoked(mailbox: Mailbox, limit: int) -> list[str]:
    if not 1 <= limit <= REVOKED_PAGE_MAX:
        raise CommandError(f"LIMIT must be from 1 to {REVOKED_PAGE_MAX}")
    return mailbox.node.jobs.revoked.newest(limit)


@handles
def do_registered(mailbox: Mailbox) -> list[str]:
    node = mailbox.node
    lines = []
    for name in sorted(node.app.tasks):
        task = node.app.tasks[name]
        extras = [f"{attr}={getattr(task, attr)}" for attr in
                  ("rate_limit", "time_limit", "soft_time_limit", "queue")
                  if getattr(task, attr, None) is not None]
        lines.append(" ".join([name, *extras]) if extras else name)
    return lines


@handles
def do_stats(mailbox: Mailbox) -> dict[str, Any]:
    import os
    import resource

    from fleet.engine.transport import mask_url, scheme_of

    node = mailbox.node
    options = node.options
    pool = node.children.pool
    usage = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "pid": os.getpid(),
        "hostname": node.name,
        "uptime": round(time.time() - node.started_at, 3),
        "state": node.state,
        "pool": {
            "implementation": options.pool,
            "max-concurrency": options.concurrency,
            "processes": pool.pids() if pool else [],
            "max-tasks-per-child": options.max_tasks_per_child,
            "max-memory-per-child": options.max_memory_per_child,
            "timeouts": [options.soft_time_limit or node.conf.task_soft_time_limit,
                         options.time_limit or node.conf.task_time_limit],
        },
        "total": dict(node.jobs.processed),
        "active": len(node.jobs.active),
        "prefetch_count": node.dispatcher.prefetch_limit,
        "queues": list(node.consumer.queues),
        "events": bool(options.send_events),
        "broker": {"url": mask_url(node.app.broker_url),
                   "transport": scheme_of(node.app.broker_url)},
        "rusage": {"utime": usage.ru_utime, "stime": usage.ru_stime,
                   "maxrss_kib": usage.ru_maxrss, "children_utime": children.ru_utime,
                   "children_stime": children.ru_stime,
                   "children_maxrss_kib": children.ru_maxrss},
    }


@handles
def do_active_queues(mailbox: Mailbox) -> list[dict]:
    return [{"name": queue} for queue in mailbox.node.consumer.queues]


@handles
def do_query_task(mailbox: Mailbox, ids: list[str]) -> dict[str, list]:
    node = mailbox.node
    wanted = set(ids)
    return {job.message.id: [where, job_info(node, job)] for where, job in node.jobs.held()
            if job.message.id in wanted}


@handles
def do_conf(mailbox: Mailbox, include_defaults: bool) -> dict[str, Any]:
    return mailbox.node.conf.masked(only_changed=not include_defaults)


@handles
def do_report(mailbox: Mailbox) -> str:
    from fleet.engine.report import build_report, format_report

    return format_report(build_report(mailbox.node.app, mailbox.node.app.main))


# -- control -----------------------------------------------------------------------------------

@handles
def do_enable_events(mailbox: Mailbox) -> str:
    options = mailbox.node.options
    if options.send_events:
        return "task events already enabled"
    options.send_events = True
    return "task events enabled"


@handles
def do_disable_events(mailbox: Mailbox) -> str:
    options = mailbox.node.options
    if not options.send_events:
        return "task events already disabled"
    options.send_events = False
    return "task events disabled"


@handles
def do_heartbeat(mailbox: Mailbox) -> str:
    if mailbox.events is not None:
        mailbox.events.worker("worker-heartbeat")
    return "heartbeat sent"


@handles
def do_rate_limit(mailbox: Mailbox, task: str, rate: str) -> str:
    from fleet.engine.ratelimit import parse_rate

    found = _task(mailbox.node, task)
    found.rate_limit = str(rate) if parse_rate(rate) else None
    mailbox.node.dispatcher.set_rate_limit(found, found.rate_limit)
    return f"rate limit of {task} set to {rate}" if found.rate_limit else \
        f"rate limit of {task} disabled"


@handles
def do_time_limit(mailbox: Mailbox, task: str, soft: float, hard: float | None) -> str:
    node = mailbox.node
    found = _task(node, task)
    if soft < 0 or (hard is not None and hard < 0):
        raise CommandError("time limits cannot be negative")
    if (soft or hard) and not node.children.pool.can_signal:
        raise CommandError(f"the {node.options.pool} pool of {node.name} cannot apply time "
                           "limits (its tasks run on threads of the main process): set them "
                           "on --pool prefork nodes")
    if hard and soft and soft >= hard:
        raise CommandError(f"the soft limit ({soft:g}s) must be below the hard one ({hard:g}s)")
    found.soft_time_limit = soft or None
    if hard is not None:
        found.time_limit = hard or None
    return f"time limits of {task} set: soft={found.soft_time_limit} hard={found.time_limit}"


@handles
def do_revoke(mailbox: Mailbox, ids: list[str]) -> str:
    node = mailbox.node
    mailbox.revoke_locally(ids)
    node.dispatcher.refuse_held(ids)
    return f"tasks {', '.join(ids)} flagged as revoked"


@handles
def do_terminate(mailbox: Mailbox, signal: str, ids: list[str]) -> str:
    node = mailbox.node
    mailbox.revoke_locally(ids)
    node.dispatcher.refuse_held(ids)
    hit = _refusable(node.children.signal_tasks, ids, signal_number(signal))
    for job in hit:
        log.warning("%s: terminating %s with SIG%s (remote request)", node.name, job.label,
                    signal)
    if not hit:
        return f"tasks {', '.join(ids)} flagged as revoked; none was running here"
    return f"terminated {', '.join(job.message.id for job in hit)} with SIG{signal}"


@handles
def do_add_consumer(mailbox: Mailbox, queue: str) -> str:
    consumer = mailbox.node.consumer
    if queue in consumer.queues:
        return f"already consuming from {queue}"
    consumer.set_queues([*consumer.queues, queue])
    return f"now consuming from {queue}"


@handles
def do_cancel_consumer(mailbox: Mailbox, queue: str) -> str:
    node = mailbox.node
    queues = node.consumer.queues
    if queue not in queues:
        raise CommandError(f"not consuming from {queue} (queues: {', '.join(queues)})")
    if len(queues) == 1:
        raise CommandError(f"{queue} is the only queue of {node.name}: add another first, "
                           "or shut the node down")
    node.consumer.set_queues([name for name in queues if name != queue])
    return f"no longer consuming from {queue}"


def _refusable(action: Callable[..., Any], *args: Any) -> Any:
    """Call a node method that refuses with a FleetError (a size outside the autoscale range,
    a bad range); the refusal becomes the command's error reply."""
    try:
        return action(*args)
    except FleetError as exc:
        raise CommandError(exc.one_line()) from None


@handles
def do_pool_grow(mailbox: Mailbox, n: int) -> str:
    node = mailbox.node
    if n < 1:
        raise CommandError("N must be at least 1")
    _refusable(node.children.grow, n, "pool_grow")
    return f"pool will grow to {node.options.concurrency}"


@handles
def do_pool_shrink(mailbox: Mailbox, n: int) -> str:
    node = mailbox.node
    if n < 1:
        raise CommandError("N must be at least 1")
    _refusable(node.children.check_resizable, "pool_shrink")
    if node.children.autoscaler is None and node.options.concurrency <= 1:
        raise CommandError("the pool has one child already: it cannot shrink further")
    _refusable(node.children.shrink, n, "pool_shrink")
    return f"pool will shrink to {node.options.concurrency}"


@handles
def do_autoscale(mailbox: Mailbox, max: int, min: int) -> str:
    from fleet.engine.autoscale import Autoscaler

    node = mailbox.node
    if min < 0 or max < 1 or max < min:
        raise CommandError(f"need 0 <= MIN <= MAX and MAX >= 1 (got MAX={max} MIN={min})")
    _refusable(node.children.check_resizable, "autoscale")
    _refusable(node.children.check_most, max, f"autoscale {max} {min}")
    if node.children.autoscaler is None:
        Autoscaler(node, max, min, node.conf.worker_autoscale_keepalive).attach()
    return _refusable(node.children.autoscaler.update, max, min)


@handles
def do_pool_restart(mailbox: Mailbox) -> str:
    return f"restarting {mailbox.node.children.restart_all()} children"


@handles
def do_shutdown(mailbox: Mailbox) -> str:
    from fleet.engine.node.jobs import WARM

    node = mailbox.node
    mailbox.after_reply(lambda: node.shutdown.begin(WARM, "remote shutdown"))
    return "shutting down"
