"""Which nodes a `fleet multi` command is about: one rule for NODES on every command.

`start` reads NODES as a node spec: a count (`3`: w1..w3) or names (`web img`), with
options. Every other command selects among the remembered nodes (the state file, in the
order they were first started, as `fleet multi names` lists them): a number is a position
(`2`), `a-b` a range of positions (`1-3`), anything else a short or full name (`w1`,
`w1@host`), and a comma list combines them (`1-3,web`); no NODES is every remembered node.
A number is never a count there, and a selector that matches nothing is an error.

The read-only commands (show, get, names, expand) can also preview a fleet before it
exists: with `--spec` they read NODES and options exactly as `start` does (no NODES: the
fleet of fleet.toml's [multi]) and start nothing. Worker options belong to `start` and
`--spec` only: after start, multi remembers each node's own, so any given elsewhere is an
error rather than silently unused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from fleet.multi import expand_nodes, select_nodes
from fleet.multictl.state import NodeRecord, StateFile, record_for
from fleet.operator_errors import FleetError, UsageError

if TYPE_CHECKING:
    from fleet.multi import MultiSpec

#: The commands that only print what they find, and so may preview a fleet (`--spec`).
PREVIEWS = ("show", "get", "names", "expand")
#: Their leading argument, before NODES (taken off first: it is not a node selector).
LEADING = {"get": "NODE", "expand": "TEMPLATE"}


def check_form(command: str, spec: MultiSpec) -> None:
    """A UsageError for `--spec` outside the previews, and for worker options given to a
    command that works on remembered nodes."""
    if spec.as_start and command not in PREVIEWS:
        raise UsageError(f"{command}: --spec is for {', '.join(PREVIEWS)} (a preview of what "
                         "start would run)",
                         f"{command} works on remembered nodes: name them by position (2), "
                         "range (1-3) or name (w1), or give none for all")
    if command == "start" or spec.as_start:
        return
    _no_options(spec, f"{command}: {{}} is for start (multi remembers each node's options), "
                      "and NODES here select remembered nodes",
                "name them by position (2), range (1-3) or name (w1), or give none for all" +
                ("; to preview what start would run with these options, add --spec"
                 if command in PREVIEWS else ""))


def check_restart_form(spec: MultiSpec) -> None:
    """`start` with no NODES (and no fleet in fleet.toml) starts the remembered nodes with
    their remembered options: a UsageError for options that would go unused."""
    _no_options(spec, "start with no NODES starts the remembered nodes with their own "
                      "options, so {} would not be used",
                "give NODES to start new nodes with it (fleet multi start 3 ...)")


def _no_options(spec: MultiSpec, message: str, hint: str) -> None:
    given = [*spec.global_options, *(option.given_as for option in spec.node_options)]
    if given or spec.passthrough:
        raise UsageError(message.format(given[0] if given else "--"), hint)


def take_leading(command: str, spec: MultiSpec) -> str | None:
    """The leading argument of get (NODE) and expand (TEMPLATE), taken off the positionals."""
    what = LEADING.get(command)
    if what is None:
        return None
    if not spec.positionals:
        example = "fleet multi get w1" if command == "get" else \
            "fleet multi expand /var/log/%n.log 1-3"
        raise UsageError(f"{command} needs a {what}", f"e.g. {example}")
    return spec.positionals.pop(0)


def remembered(state: StateFile, selectors: Sequence[str], command: str) -> list[NodeRecord]:
    """The remembered nodes `selectors` pick (none: all of them), in the order started."""
    records = list(state.load().values())
    if not records:
        preview = "; to see what start would run, add --spec (fleet multi names --spec 3)" \
            if command in PREVIEWS else ""
        raise FleetError("no nodes are known to fleet multi here",
                         "start some first (fleet multi start 3 -A proj, or describe them "
                         f"in fleet.toml's [multi]); multi remembers them in {state.path}"
                         + preview)
    return select_nodes(records, selectors)


def previewed(spec: MultiSpec) -> list[NodeRecord]:
    """`--spec`: the records `start` would make of this command line (nothing is started)."""
    if not spec.positionals:
        raise UsageError("--spec: no nodes given",
                         "give a count or names as to start (fleet multi show --spec 3 -A "
                         "proj), or describe the fleet in fleet.toml's [multi]")
    return [record_for(node, spec.executable, spec.workdir) for node in expand_nodes(spec)]


def targets(state: StateFile, spec: MultiSpec, command: str) -> list[NodeRecord]:
    """The nodes a command after start is about: previewed (`--spec`) or remembered."""
    if spec.as_start:
        return previewed(spec)
    return remembered(state, spec.positionals, command)


def one(records: Sequence[NodeRecord], selector: str) -> NodeRecord:
    """The single node `selector` picks (`get`): a UsageError if it picks several."""
    picked = select_nodes(records, [selector])
    if len(picked) > 1:
        raise UsageError(f"get prints one node's command, but {selector!r} selects "
                         f"{len(picked)}: {', '.join(record.name for record in picked)}",
                         "give one position or name, e.g. fleet multi get 2")
    return picked[0]
