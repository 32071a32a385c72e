"""The remote-control client behind `app.control`: inspect and control nodes over the broker,
and see who is up.

    app.control.ping()                                    -> {"w1@host": "pong", ...}
    app.control.inspect(destination=["w1@host"]).active() -> {"w1@host": [{...task...}]}
    app.control.broadcast("pool_grow", {"n": 2})          -> {"w1@host": {"ok": "..."}}
    app.control.revoke(task_id, terminate=True, signal="KILL")

A request goes to every node (or the destination list) with a ticket and a deadline; the
client subscribes to the ticket's reply channel *before* it publishes, then returns as soon
as every node it expects has answered: the destination list, or every node whose heartbeat
is fresh (see `NodeSeen.online`). Otherwise it returns at the deadline with what it got.
Nodes the broker does not know are not waited for: with no node registered at all, or a
destination list of unknown nodes only, it returns at once.
Replies are waited for on the subscription's socket (Redis) or by polling every 10 ms
(SQLite), never by sleeping out the timeout.

The results are `Replies`: a dict node -> value, which also says which nodes were expected,
which did not answer, and which nodes the broker knows (what the operator layer needs to
explain why nobody answered). This module never prints: the CLI renders. It is the client
side of the engine: it never imports the node.
"""

from __future__ import annotations

import json
import selectors
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from fleet.engine.commands import (
    CONTROL,
    CONTROL_CHANNEL,
    INSPECT,
    WIRE_VERSION,
    CommandError,
    check_arguments,
    get_command,
    reply_channel,
    store_revokes,
)
from fleet.engine.transport.base import DEAD_LETTER_QUEUE
from fleet.operator_errors import UsageError
from fleet.signals import parse_signal, signal_name

if TYPE_CHECKING:
    from fleet.engine.app import Fleet

#: A node is offline once it missed this many heartbeats.
MISSED_HEARTBEATS = 3
#: Polling period for reply subscriptions without a descriptor (SQLite).
POLL_INTERVAL = 0.01


@dataclass
class NodeSeen:
    """A node as the broker knows it (its registration and last heartbeat)."""

    name: str
    host: str
    pid: int
    last_heartbeat: float
    info: dict = field(default_factory=dict)
    queues: list[str] = field(default_factory=list)

    @property
    def age(self) -> float:
        return max(0.0, time.time() - self.last_heartbeat)

    @property
    def heartbeat_interval(self) -> float:
        return float(self.info.get("freq") or 2.0)

    @property
    def online(self) -> bool:
        """Fresh heartbeat: fewer than MISSED_HEARTBEATS missed (and at least a second)."""
        return self.age <= max(MISSED_HEARTBEATS * self.heartbeat_interval, 1.0)

    def as_dict(self) -> dict[str, Any]:
        return {"node": self.name, "host": self.host, "pid": self.pid,
                "online": self.online, "last_heartbeat": self.last_heartbeat,
                "seconds_since_heartbeat": round(self.age, 3), "queues": self.queues,
                **{key: self.info.get(key) for key in ("active", "processed", "concurrency",
                                                       "loadavg", "state", "started")}}


class Replies(dict):
    """node name -> reply, plus what the caller needs to explain missing replies."""

    def __init__(self, items: dict | None = None, *, command: str = "", timeout: float = 0.0,
                 expected: list[str] | None = None, known: list[NodeSeen] | None = None,
                 elapsed: float = 0.0, duplicates: list[str] | None = None):
        super().__init__(items or {})
        self.command = command
        self.timeout = timeout
        self.expected = expected or []
        self.known = known or []
        self.elapsed = elapsed
        self.duplicates = duplicates or []

    @property
    def missing(self) -> list[str]:
        """Expected nodes that did not answer in time."""
        return [name for name in self.expected if name not in self]

    def errors(self) -> dict[str, str]:
        """Nodes that answered with an error (only for raw replies: {"error": ...})."""
        return {node: reply["error"] for node, reply in self.items()
                if isinstance(reply, dict) and "error" in reply and len(reply) == 1}


def known_nodes(app: Fleet) -> list[NodeSeen]:
    """Every node registered with the broker, one per name (the latest heartbeat wins)."""
    seen: dict[str, NodeSeen] = {}
    for record in app.broker.consumers():
        node = NodeSeen(record.node, record.host, record.pid, record.last_heartbeat,
                        dict(record.info), list(record.queues))
        if record.node not in seen or node.last_heartbeat > seen[record.node].last_heartbeat:
            seen[record.node] = node
    return [seen[name] for name in sorted(seen)]


def _destination(destination: str | Iterable[str] | None) -> list[str] | None:
    if destination is None:
        return None
    items = destination.split(",") if isinstance(destination, str) else list(destination)
    names = [name.strip() for name in items if name and name.strip()]
    return list(dict.fromkeys(names)) or None


class Control:
    """`app.control`: broadcast commands to nodes and collect their replies."""

    def __init__(self, app: Fleet):
        self.app = app

    def inspect(self, destination: str | Iterable[str] | None = None,
                timeout: float | None = None) -> Inspect:
        return Inspect(self, destination, timeout)

    def nodes(self) -> list[NodeSeen]:
        """The nodes the broker knows, online or not (from heartbeats; no broadcast)."""
        return known_nodes(self.app)

    # -- the one primitive -----------------------------------------------------------------------

    def broadcast(self, name: str, arguments: dict[str, Any] | None = None,
                  destination: str | Iterable[str] | None = None, reply: bool = True,
                  timeout: float | None = None, kind: str | None = None) -> Replies:
        """Send command `name` to the nodes; return their raw replies ({"ok"|"error": ...}).

        Returns once every expected node answered, else at `timeout` (default: the
        command's own). With `reply=False` it returns at once (no replies).
        """
        try:
            cmd = get_command(name, kind)
            checked = check_arguments(cmd, arguments)
        except CommandError as exc:
            raise UsageError(str(exc)) from None
        timeout = cmd.timeout if timeout is None else float(timeout)
        targets = _destination(destination)
        started = time.monotonic()
        known = known_nodes(self.app)
        expected = targets or [node.name for node in known if node.online]
        # Who can answer: a destination the broker does not know (a typo, a node that was
        # stopped) never will, so it is not waited for.
        able = [name for name in expected if name in {node.name for node in known}]
        ticket = uuid.uuid4().hex
        request = json.dumps({"v": WIRE_VERSION, "ticket": ticket, "command": cmd.name,
                              "arguments": checked, "destination": targets,
                              "deadline": time.time() + timeout, "reply": reply})
        broker = self.app.broker
        if cmd.name in ("revoke", "terminate"):  # durable first: nodes started later see it
            store_revokes(broker, checked["ids"], self.app.conf.task_revoke_expires,
                          checked.get("signal"))
        replies = Replies(command=cmd.name, timeout=timeout, expected=expected, known=known)
        if not reply or (not able and (targets is not None or not known)):
            # Nobody who could answer (no node registered at all, or none of the destination
            # list): do not wait out the timeout. (With no destination and only nodes with
            # stale heartbeats, wait: a late node may still answer.)
            broker.publish(CONTROL_CHANNEL, request)
            replies.elapsed = time.monotonic() - started
            return replies
        subscription = broker.subscribe([reply_channel(ticket)])
        try:
            broker.publish(CONTROL_CHANNEL, request)
            self._collect(subscription, ticket, replies, started + timeout, able)
        finally:
            subscription.close()
        replies.elapsed = time.monotonic() - started
        return replies

    @staticmethod
    def _collect(subscription: Any, ticket: str, replies: Replies, deadline: float,
                 able: list[str]) -> None:
        waiting = set(able)
        with selectors.DefaultSelector() as selector:
            fd = subscription.fileno()
            if fd is not None:
                selector.register(fd, selectors.EVENT_READ)
            while True:
                broadcasts, _ = subscription.poll()
                for _, payload in broadcasts:
                    _take_reply(payload, ticket, replies)
                waiting.difference_update(replies)
                remaining = deadline - time.monotonic()
                if (able and not waiting) or remaining <= 0:
                    return
                if fd is not None:
                    selector.select(remaining)
                else:
                    time.sleep(min(POLL_INTERVAL, remaining))

    # -- control commands ------------------------------------------------------------------------

    def _control(self, name: str, destination: Any, timeout: float | None, reply: bool = True,
                 **arguments: Any) -> Replies:
        return self.broadcast(name, arguments, destination, reply, timeout, kind=CONTROL)

    def ping(self, destination: str | Iterable[str] | None = None,
             timeout: float | None = None) -> Replies:
        """{node: "pong"} for every node that answered."""
        return self.inspect(destination, timeout).ping()

    def revoke(self, task_id: str | Iterable[str], terminate: bool = False,
               signal: str | int = "TERM", destination: str | Iterable[str] | None = None,
               reply: bool = False, timeout: float | None = None) -> Replies:
        """Never run these tasks; with `terminate`, kill them with `signal` if running.

        The revoke is stored in the broker (for `task_revoke_expires` seconds) before it is
        broadcast (`broadcast` does that for every revoke), so nodes started later refuse
        the tasks too. By default it does not wait for replies (`reply=True` collects them).
        """
        ids = [task_id] if isinstance(task_id, str) else [str(item) for item in task_id]
        if not ids:
            raise UsageError("revoke needs at least one task id")
        label = signal_name(parse_signal(signal))
        if terminate:
            return self._control("terminate", destination, timeout, reply, signal=label,
                                 ids=ids)
        return self._control("revoke", destination, timeout, reply, ids=ids)

    def terminate(self, signal: str | int, task_id: str | Iterable[str],
                  destination: Any = None, reply: bool = True,
                  timeout: float | None = None) -> Replies:
        return self.revoke(task_id, True, signal, destination, reply, timeout)

    def rate_limit(self, task_name: str, rate: str | float, destination: Any = None,
                   reply: bool = True, timeout: float | None = None) -> Replies:
        return self._control("rate_limit", destination, timeout, reply, task=task_name,
                             rate=str(rate))

    def time_limit(self, task_name: str, soft: float, hard: float | None = None,
                   destination: Any = None, reply: bool = True,
                   timeout: float | None = None) -> Replies:
        return self._control("time_limit", destination, timeout, reply, task=task_name,
                             soft=soft, hard=hard)

    def enable_events(self, destination: Any = None, timeout: float | None = None) -> Replies:
        return self._control("enable_events", destination, timeout)

    def disable_events(self, destination: Any = None, timeout: float | None = None) -> Replies:
        return self._control("disable_events", destination, timeout)

    def heartbeat(self, destination: Any = None, timeout: float | None = None) -> Replies:
        return self._control("heartbeat", destination, timeout)

    def add_consumer(self, queue: str, destination: Any = None,
                     timeout: float | None = None) -> Replies:
        return self._control("add_consumer", destination, timeout, queue=queue)

    def cancel_consumer(self, queue: str, destination: Any = None,
                        timeout: float | None = None) -> Replies:
        return self._control("cancel_consumer", destination, timeout, queue=queue)

    def pool_grow(self, n: int = 1, destination: Any = None,
                  timeout: float | None = None) -> Replies:
        return self._control("pool_grow", destination, timeout, n=n)

    def pool_shrink(self, n: int = 1, destination: Any = None,
                    timeout: float | None = None) -> Replies:
        return self._control("pool_shrink", destination, timeout, n=n)

    def autoscale(self, max: int, min: int, destination: Any = None,
                  timeout: float | None = None) -> Replies:
        return self._control("autoscale", destination, timeout, max=max, min=min)

    def pool_restart(self, destination: Any = None, timeout: float | None = None) -> Replies:
        return self._control("pool_restart", destination, timeout)

    def shutdown(self, destination: Any = None, timeout: float | None = None) -> Replies:
        """Warm shutdown; each node replies before it stops."""
        return self._control("shutdown", destination, timeout)

    def purge(self) -> int:
        """Delete every waiting message of every known queue (not the dead letters)."""
        broker = self.app.broker
        names = [s.name for s in broker.queue_stats() if s.name != DEAD_LETTER_QUEUE]
        return broker.purge(names) if names else 0


def _take_reply(payload: str, ticket: str, replies: Replies) -> None:
    """Count one reply to `ticket`; anything else on the channel (not sent by a node: no
    node name, no answer) is skipped."""
    try:
        body = json.loads(payload)
        node = body.pop("node")
    except (ValueError, KeyError, TypeError, AttributeError, RecursionError):
        return
    if body.pop("ticket", None) != ticket or not isinstance(node, str) or \
            not ("ok" in body or isinstance(body.get("error"), str)):
        return
    if node in replies:
        replies.duplicates.append(node)
        return
    replies[node] = body


class Inspect:
    """Read-only questions to nodes: each method returns {node: answer}.

    A node that answered with an error maps to {"error": "..."}.
    """

    def __init__(self, control: Control, destination: Any = None, timeout: float | None = None):
        self.control = control
        self.destination = destination
        self.timeout = timeout

    def _ask(self, name: str, **arguments: Any) -> Replies:
        raw = self.control.broadcast(name, arguments, self.destination, True, self.timeout,
                                     kind=INSPECT)
        return Replies({node: reply.get("ok", reply)
                        for node, reply in raw.items()}, command=raw.command,
                       timeout=raw.timeout, expected=raw.expected, known=raw.known,
                       elapsed=raw.elapsed, duplicates=raw.duplicates)

    def ping(self) -> Replies:
        return self._ask("ping")

    def active(self) -> Replies:
        return self._ask("active")

    def reserved(self) -> Replies:
        return self._ask("reserved")

    def scheduled(self) -> Replies:
        return self._ask("scheduled")

    def revoked(self) -> Replies:
        return self._ask("revoked")

    def registered(self) -> Replies:
        return self._ask("registered")

    def stats(self) -> Replies:
        return self._ask("stats")

    def active_queues(self) -> Replies:
        return self._ask("active_queues")

    def query_task(self, *ids: str) -> Replies:
        flat = [i for item in ids for i in ([item] if isinstance(item, str) else item)]
        return self._ask("query_task", ids=flat)

    def conf(self, include_defaults: bool = False) -> Replies:
        return self._ask("conf", include_defaults=include_defaults)

    def report(self) -> Replies:
        return self._ask("report")
