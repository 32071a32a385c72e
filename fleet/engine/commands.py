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

Revokes are durable, written by the client (`store_revokes`) with an expiry
(`task_revoke_expires`): each revoke call takes the next number of the counter
`revoked.version` and stores its ids under `revoked.batch:<number>` (and each id under
`revoked:<task id>`, for a look-up by id). A node loads the batches by number, never by
listing keys: at start the newest ones, then at each heartbeat only those numbered after
the last it read (`fleet.engine.control`), so loading never scans the store, whatever else
it holds.

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
REVOKE_BATCH_PREFIX = "revoked.batch:"
DEFAULT_TIMEOUT = 1.0
#: How many revoked ids `inspect revoked` returns by default, and at most.
REVOKED_PAGE, REVOKED_PAGE_MAX = 1000, 10_000
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
    """Make revokes durable: every node, now or started later, refuses these ids (until
    `expires` seconds from now)."""
    from fleet.engine.transport.base import StoredResult  # (not at the CLI's start-up)

    now = time.time()
    value = json.dumps({"at": now, "signal": signal})
    number = broker.incr(REVOKE_VERSION_KEY, 1, ttl=expires)
    batch = json.dumps({"ids": list(ids), "at": now, "expires": expires, "signal": signal})
    broker.set_values([StoredResult(f"{REVOKE_BATCH_PREFIX}{number}", batch, expires),
                       *[StoredResult(REVOKE_PREFIX + task_id, value, expires)
                         for task_id in ids]])


class CommandError(Exception):
    """A command that could not do what was asked: sent back as the node's error reply."""


@dataclass(frozen=True)
class Request:
    """A control request as a node reads it off the wire (see the module docstring)."""

    command: str
    arguments: dict[str, Any]
    destination: list[str] | None = None
    deadline: float | None = None
    ticket: str | None = None
    reply: bool = True


#: Largest control request a node reads (its arguments: task ids to revoke, ...).
REQUEST_SIZE = 4 * 1024 * 1024


def decode_request(payload: Any) -> Request:
    """Read a control request strictly; anything else is a CommandError saying what is
    wrong (a node logs it and answers nothing: there may be no ticket to answer to)."""
    from fleet.engine.message import MAX_NAME, parse_json  # (only nodes read requests)

    try:
        data = parse_json(payload, REQUEST_SIZE)
    except ValueError as exc:
        raise CommandError(f"not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CommandError(f"a JSON {type(data).__name__}, not an object")
    command, arguments = data.get("command"), data.get("arguments") or {}
    destination, deadline = data.get("destination"), data.get("deadline")
    ticket, reply = data.get("ticket"), data.get("reply", True)
    if not isinstance(command, str) or not 0 < len(command) <= MAX_NAME:
        raise CommandError(f"its command is {_shown(command)}, not a command name")
    if not isinstance(arguments, dict):
        raise CommandError(f"its arguments are {_shown(arguments)}, not an object")
    if destination is not None and not (isinstance(destination, list) and
                                        all(isinstance(name, str) for name in destination)):
        raise CommandError(f"its destination is {_shown(destination)}, not a list of nodes")
    if deadline is not None and not (isinstance(deadline, int | float) and
                                     not isinstance(deadline, bool)):
        raise CommandError(f"its deadline is {_shown(deadline)}, not a time")
    if ticket is not None and not (isinstance(ticket, str) and 0 < len(ticket) <= MAX_NAME):
        raise CommandError(f"its ticket is {_shown(ticket)}, not a ticket")
    return Request(command, arguments, destination, deadline, ticket, reply is not False)


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


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


#: Largest whole number and number an argument may be (a pool of a billion children, a
#: time limit of 30 years: nonsense either way, and refused before it does harm).
MAX_WHOLE, MAX_NUMBER = 10**9, 1e9


def _whole(value: Any) -> int:
    if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
        raise ValueError("expected a whole number")
    try:
        number = int(value)
    except (ValueError, TypeError, OverflowError):  # int()'s message speaks Python
        raise ValueError("expected a whole number such as 2") from None
    if abs(number) > MAX_WHOLE:
        raise ValueError(f"expected a whole number of at most {MAX_WHOLE}")
    return number


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number")
    try:
        number = float(value)
    except (ValueError, TypeError, OverflowError):
        raise ValueError("expected a number of seconds such as 1.5") from None
    if not abs(number) <= MAX_NUMBER:  # (NaN fails this too)
        raise ValueError(f"expected a number of seconds of at most {MAX_NUMBER:g}")
    return number


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

    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError("expected a rate such as 10/s")
    if not 0 <= parse_rate(value) <= MAX_NUMBER:  # (parse_rate raises ConfigError on a bad
        raise ValueError("expected a rate such as 10/s")  # rate; NaN fails this)
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

    if arguments is not None and not isinstance(arguments, dict):
        raise CommandError(f"{cmd.name}: arguments must be an object, not "
                           f"{type(arguments).__name__} (usage: {cmd.signature()})")
    arguments = dict(arguments or {})
    unknown = sorted(map(str, set(arguments) - {arg.name for arg in cmd.args}))
    if unknown:
        raise CommandError(f"{cmd.name} takes no argument {_shown(unknown[0])} "
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
        except (ValueError, TypeError, OverflowError, RecursionError, FleetError) as exc:
            text = exc.one_line() if isinstance(exc, FleetError) else str(exc)
            raise CommandError(f"{cmd.name}: bad {arg.name.upper()} {_shown(value)}: "
                               f"{text[:200]}") from None
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
declare(INSPECT, "revoked",
        "Ids of revoked tasks this node refuses (durable revokes included), newest first.",
        Arg("limit", "int", f"At most this many (default {REVOKED_PAGE}, at most "
                            f"{REVOKED_PAGE_MAX}).", default=REVOKED_PAGE))
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
