"""Remote control's one registry of commands, and its wire: what both ends agree on.

Both ends read the same registry (`COMMANDS`): the node dispatches from it (its handlers are
in `fleet.engine.control`), and the client (`fleet.engine.remote`, behind `app.control`) and
the CLI (fleet/cli_remote.py) build their argument checks, `--list` and `--help` from it.
Each command is declared here as data: its kind (inspect: read-only; control: changes the
node), its typed arguments, a help line and a default timeout.

The wire (JSON over the broker's broadcast channels, so it works on every transport):

    request, on channel "control":
        {"v": 1, "ticket": "<hex>", "command": "ping", "arguments": {...},
         "destination": ["w1@host", ...] or null (every node), "deadline": <epoch>,
         "reply": true}
    reply, on channel "reply.<ticket>" (the client subscribed before it published):
        {"ticket": "<hex>", "node": "w1@host", "ok": <value>}  or  {..., "error": "<text>"}

A node ignores requests for other nodes and requests whose deadline passed (the client
stopped listening) by more than CLOCK_SKEW_GRACE, since the deadline is the client's clock.

Revokes are durable: `revoked:<task id>` values in the broker, with an expiry
(`task_revoke_expires`), and a counter `revoked.version` bumped on every revoke: the client
writes them (`store_revokes`), nodes load them.

This module imports only the standard library and fleet's leaf modules at load time: the CLI
imports the registry on every start.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fleet.operator_errors import FleetError, UsageError, closest
from fleet.signals import parse_signal, signal_name

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


def store_revokes(broker: Any, ids: list[str], expires: float, signal: str | None = None
                  ) -> None:
    """Make revokes durable: every node, now or started later, refuses these ids."""
    from fleet.engine.transport.base import StoredResult  # (not at the CLI's start-up)

    value = json.dumps({"at": time.time(), "signal": signal})
    broker.set_values([StoredResult(REVOKE_PREFIX + task_id, value, expires)
                       for task_id in ids])
    broker.incr(REVOKE_VERSION_KEY, 1, ttl=expires)


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
    args: tuple[Arg, ...] = ()
    timeout: float = DEFAULT_TIMEOUT

    def signature(self) -> str:
        return " ".join([self.name, *(arg.usage() for arg in self.args)])


COMMANDS: dict[str, Command] = {}


def declare(kind: str, name: str, help: str, *args: Arg,
            timeout: float = DEFAULT_TIMEOUT) -> Command:
    """Add command `name` to the registry (the node needs a handler of the same name)."""
    COMMANDS[name] = Command(name, kind, help, args, timeout)
    return COMMANDS[name]


def commands_of(kind: str) -> list[Command]:
    return [cmd for cmd in COMMANDS.values() if cmd.kind == kind]


def get_command(name: str, kind: str | None = None) -> Command:
    """The command `name` (of `kind`), or a CommandError naming the closest one."""
    found = COMMANDS.get(name)
    if found is not None and (kind is None or found.kind == kind):
        return found
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
    from fleet.engine.ratelimit import parse_rate  # (only when a rate is given: CLI start-up)

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


# == the commands =================================================================================

declare(INSPECT, "ping", "Answer pong (the node is up and its main loop responds).")
declare(INSPECT, "active", "Tasks running now: id, name, args, child pid, start time.")
declare(INSPECT, "reserved",
        "Tasks prefetched by the node, waiting for a free child (or their rate limit).",
)
declare(INSPECT, "scheduled", "ETA/countdown tasks the node holds until they are due.")
declare(INSPECT, "revoked", "Ids of revoked tasks this node refuses (durable revokes included).")
declare(INSPECT, "registered", "The tasks this node can run, with their rate and time limits.")
declare(INSPECT, "stats",
        "Pid, uptime, pool, tasks done per name, prefetch, broker, resource usage.")
declare(INSPECT, "active_queues", "The queues this node consumes.")
declare(INSPECT, "query_task",
        "What this node knows of these task ids: active, reserved or scheduled.",
        Arg("ids", "str", "Task ids.", many=True))
declare(INSPECT, "conf", "The node's effective settings (secrets masked).",
        Arg("include_defaults", "bool", "Every setting, not only changed ones.", default=False))
declare(INSPECT, "report", "Versions, platform and settings of the node, like `fleet report`.")
declare(CONTROL, "enable_events", "Start sending task events (like `fleet worker -E`).")
declare(CONTROL, "disable_events", "Stop sending task events (worker events continue).")
declare(CONTROL, "heartbeat", "Send a worker-heartbeat event now.")
declare(CONTROL, "rate_limit", "Change a task's rate limit on the node (later tasks).",
        Arg("task", "str", "Task name."),
        Arg("rate", "rate", "Tasks per node: 10/s, 100/m, 1000/h, or 0 for no limit."))
declare(CONTROL, "time_limit",
        "Change a task's soft and hard time limits on the node (tasks started later).",
        Arg("task", "str", "Task name."),
        Arg("soft", "float", "Soft time limit in seconds (0: none)."),
        Arg("hard", "float", "Hard time limit in seconds (0: none).", default=None))
declare(CONTROL, "revoke", "Never run these tasks (durable: nodes started later refuse them too).",
        Arg("ids", "str", "Task ids.", many=True))
declare(CONTROL, "terminate", "Revoke these tasks and kill the running ones with SIGNAL.",
        Arg("signal", "signal", "Signal for the running task: TERM, KILL, ..."),
        Arg("ids", "str", "Task ids.", many=True))
declare(CONTROL, "add_consumer", "Start consuming from QUEUE.", Arg("queue", "str", "Queue name."))
declare(CONTROL, "cancel_consumer", "Stop consuming from QUEUE (tasks already reserved still run).",
        Arg("queue", "str", "Queue name."))
declare(CONTROL, "pool_grow",
        "Add N children to the pool (within the autoscale range, if one is set).",
        Arg("n", "int", "Children to add (default 1).", default=1))
declare(CONTROL, "pool_shrink",
        "Remove N children from the pool (busy ones finish their task first).",
        Arg("n", "int", "Children to remove (default 1).", default=1))
declare(CONTROL, "autoscale",
        # (the help line as it always read: the sentence goes on in the old handler's docstring,
        # "... on for a node started without --autoscale")
        "Set the pool's autoscale range (children between MIN and MAX); turns autoscaling on",
        Arg("max", "int", "Most children."), Arg("min", "int", "Fewest children."))
declare(CONTROL, "pool_restart",
        "Replace every child (busy ones after their task): picks up changed code on disk.")
declare(CONTROL, "shutdown", "Warm shutdown: stop consuming, let running tasks finish, exit.")
