"""`fleet multi`: from a command line to the list of nodes to run.

This part is pure: it reads the host name (and, for default paths, the effective uid and the
state directory's location) but starts no process and creates no file. The controller that
starts and stops nodes, and the state file, build on it (fleet/multictl/control.py), and so does
fleet.toml's [multi] section (fleet/multictl/toml_section.py).

Grammar, after the sub-command (`fleet multi start ...`):

    NODES...          at start (and with --spec): one integer N (count form: w1..wN) or
                      node names (names form); after start, selectors of remembered nodes
                      (see fleet/multictl/targets.py and `select_nodes`)
    -x VALUE, --opt VALUE, --opt=VALUE
                      a worker option for every node, or a multi option (the tables below)
    -x:SEL VALUE, --opt:SEL=VALUE, --opt:SEL VALUE
                      a worker option for the nodes SEL selects: a position `2`, a range
                      `1-3`, a short name `img`, a full name `img@host`, or a comma list of
                      those (`1-3,7`, `web,img`); a selector that matches nothing is an error
    -TERM, -9, --signal=NAME
                      the signal for stop/stopwait/restart
    -- ARGS...        passed to every node verbatim, after a `--`

Rules that differ from `celery multi` on purpose (its behaviour is the reason):
- an option means the same whatever its spelling: `-c:1 10` overrides `--concurrency=3`;
- ranges and lists work in the names form too; a bad selector is an error, never ignored;
- after start a number always selects a remembered node by position (celery's `stop 3`
  rebuilds three nodes from the start arguments), so no node may be named like one;
- a value-taking option never takes an option-looking token as its value (write `--opt=-x`);
- a per-node option given later wins over an earlier one for the same node; a global option
  given twice keeps the last value.
"""

from __future__ import annotations

import math
import os
import re
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from signal import Signals

from fleet.app_options import Option
from fleet.nodenames import format_node, gethostname, host_format, preformat_node
from fleet.operator_errors import UsageError, closest
from fleet.paths import default_node_files
from fleet.signals import parse_signal
from fleet.worker_setup.options import multi_options

OptionValue = str | bool


@dataclass(frozen=True)
class OptionDef:
    """An option: its canonical long spelling, its other spellings, whether it takes a value."""

    name: str
    aliases: tuple[str, ...] = ()
    takes_value: bool = True
    attribute: str = ""  #: the MultiSpec field it sets, when not named like the option

    @property
    def field(self) -> str:
        return self.attribute or self.name[2:].replace("-", "_")


# The options multi passes on to each node, in the order a node's argv lists them: those of
# `fleet worker`'s own table (fleet.worker_setup.options) that multi passes on. `-n/--hostname`
# is not one: multi names every node itself, and in multi `-n/--hostname` sets the host part
# of generated names (see MULTI_OPTIONS).
WORKER_OPTIONS: tuple[Option, ...] = multi_options()

# Worker options whose value the node expands again itself, with fleet.nodenames.format_node
# (per process for the log file). multi therefore expands them with preformat_node, which
# leaves %i, %I and %% for that second pass.
WORKER_EXPANDED = frozenset(option.name for option in WORKER_OPTIONS if option.node_expands)

# Options multi consumes itself; never passed to a node. Each sets the MultiSpec field named
# like the option (`--range-prefix` -> range_prefix).
MULTI_OPTIONS: tuple[OptionDef, ...] = (
    OptionDef("--range-prefix"),
    OptionDef("--prefix"),
    OptionDef("--hostname", ("-n",)),
    OptionDef("--workdir"),
    OptionDef("--executable"),
    OptionDef("--timeout"),
    OptionDef("--signal"),
    OptionDef("--rolling", takes_value=False),
    OptionDef("--spec", takes_value=False, attribute="as_start"),
    OptionDef("--reveal-secrets", takes_value=False),
    OptionDef("--json", takes_value=False),
    OptionDef("--quiet", ("-q",), takes_value=False),
    OptionDef("--verbose", takes_value=False),
    OptionDef("--no-color", takes_value=False),
)

DEFAULT_RANGE_PREFIX = "w"
#: Nodes one multi command may name: each is a process group on this host, and expanding a
#: count of 100,000 took seconds and hundreds of MB (larger ones never came back).
MAX_NODES = 1000
SIGNAL_EXAMPLES = "e.g. -TERM, -KILL, -HUP, -INT, -QUIT, -USR1, -9, or --signal=TERM"

_WORKER_BY_SPELLING = {s: o for o in WORKER_OPTIONS for s in (o.name, *o.aliases)}
_MULTI_BY_SPELLING = {s: o for o in MULTI_OPTIONS for s in (o.name, *o.aliases)}
_SIGNAL_SHORTHAND = re.compile(r"-(?:[A-Z][A-Z0-9]+|[0-9]+)")
_NUMBER = re.compile(r"[0-9]+")
_RANGE = re.compile(r"([0-9]+)-([0-9]+)")
_BAD_NAME_CHARS = frozenset(" \t\n\r/,%")


@dataclass(frozen=True)
class NodeOption:
    """A per-node worker option as given (`-c:1-3 10`); its selector is resolved at expansion."""

    name: str  #: canonical long spelling, e.g. "--concurrency"
    selector: str  #: e.g. "1-3"
    value: OptionValue
    given_as: str  #: the option as typed, e.g. "-c:1-3", for error messages


@dataclass
class MultiSpec:
    """Everything on a `fleet multi` command line, parsed but not yet expanded into nodes."""

    positionals: list[str] = field(default_factory=list)  #: a count, node names, or selectors
    global_options: dict[str, OptionValue] = field(default_factory=dict)  #: canonical -> value
    node_options: list[NodeOption] = field(default_factory=list)  #: in command-line order
    passthrough: list[str] = field(default_factory=list)  #: everything after `--`
    hostname: str = ""  #: the host part of generated names
    prefix: str | None = None  #: names form only
    range_prefix: str | None = None  #: count form only (default "w")
    workdir: Path | None = None  #: multi runs every node in this directory
    executable: str | None = None
    timeout: float | None = None
    signal: Signals | None = None
    rolling: bool = False
    #: --spec: NODES and options are read as start reads them (show, get, names, expand)
    as_start: bool = False
    #: get: print passwords in clear (for pasting); every other output masks them
    reveal_secrets: bool = False
    json: bool = False
    quiet: bool = False
    verbose: bool = False
    no_color: bool = False


@dataclass(frozen=True)
class NodeSpec:
    """One node to run: its name, its worker options (already %-expanded) and its files."""

    name: str  #: full node name, `w1@host`
    index: int  #: 1-based position in the node list
    options: dict[str, OptionValue]  #: canonical long spelling -> value (True for flags)
    passthrough: tuple[str, ...]
    pidfile: Path  #: the file the node's main process writes
    logfile: str  #: the template the node gets: %i/%I (and %%) left for each of its processes

    @property
    def short(self) -> str:
        return self.name.partition("@")[0]

    @property
    def host(self) -> str:
        return self.name.partition("@")[2]

    def worker_argv(self) -> list[str]:
        """The node's `fleet worker` arguments, without the executable (multi adds --detach)."""
        argv = ["worker", "-n", self.name]
        for name, value in self.options.items():
            argv.append(name if value is True else f"{name}={value}")
        if self.passthrough:
            argv += ["--", *self.passthrough]
        return argv

    def logfile_for(self, process_index: int) -> Path:
        """The log file of one of the node's processes (0 is the main process)."""
        return Path(format_node(self.logfile, self.name, process_index))


@dataclass(frozen=True)
class _Given:
    """One option token (and its value) read from the command line."""

    option: Option | OptionDef
    for_multi: bool
    selector: str | None
    value: OptionValue
    given_as: str


class _NoMatch(Exception):
    """A selector entry matched no node; the argument is the reason, for the UsageError."""


# -- parsing ---------------------------------------------------------------------------------


def parse_multi_args(argv: Sequence[str], hostname: str | None = None) -> MultiSpec:
    """Parse everything after `fleet multi COMMAND` (pure; `hostname` overrides this machine's).

    Every option is canonicalised to its long spelling here, so later steps never compare
    spellings (celery multi merged by exact spelling, so `-c:1` did not beat `--concurrency`).
    """
    head, passthrough = _split_passthrough(argv)
    spec = MultiSpec(passthrough=passthrough)
    pending = deque(head)
    while pending:
        _consume(spec, pending.popleft(), pending)
    spec.hostname = spec.hostname or hostname or gethostname()
    return spec


def _split_passthrough(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    args = list(argv)
    if "--" not in args:
        return args, []
    cut = args.index("--")
    return args[:cut], args[cut + 1 :]


def _consume(spec: MultiSpec, token: str, pending: deque[str]) -> None:
    if not token.startswith("-"):
        spec.positionals.append(token)
    elif _SIGNAL_SHORTHAND.fullmatch(token):
        spec.signal = parse_signal(token[1:], given_as=token, hint=SIGNAL_EXAMPLES)
    else:
        _apply(spec, _read_option(token, pending))


def _read_option(token: str, pending: deque[str]) -> _Given:
    head, has_value, inline = token.partition("=")
    spelling, has_selector, selector = head.partition(":")
    option, for_multi = _lookup(spelling)
    if has_selector:
        _check_per_node(head, selector, option, for_multi)
    if not option.takes_value:
        if has_value:
            raise UsageError(f"{head} is a flag and takes no value", f"write {head} alone")
        value: OptionValue = True
    else:
        value = inline if has_value else _take_value(head, pending)
    return _Given(option, for_multi, selector if has_selector else None, value, head)


def _lookup(spelling: str) -> tuple[Option | OptionDef, bool]:
    if spelling in _WORKER_BY_SPELLING:
        return _WORKER_BY_SPELLING[spelling], False
    if spelling in _MULTI_BY_SPELLING:
        return _MULTI_BY_SPELLING[spelling], True
    guess = closest(spelling, [*_WORKER_BY_SPELLING, *_MULTI_BY_SPELLING])
    hint = f"did you mean {guess}?" if guess else "see `fleet multi --help` for the options"
    raise UsageError(f"unknown option {spelling}", hint)


def _check_per_node(given_as: str, selector: str, option: Option | OptionDef,
                    for_multi: bool) -> None:
    if for_multi and option.name == "--hostname":
        raise UsageError(
            f"{given_as}: the host part cannot be set per node",
            "multi names each node itself; give that node a full name instead, e.g. web@other.host",
        )
    if for_multi:
        raise UsageError(
            f"{given_as}: {option.name} is an option of fleet multi itself, not per node",
            f"write {option.name} without a :selector",
        )
    if not selector:
        raise UsageError(f"{given_as}: empty node selector", f"e.g. {given_as}1 or {given_as}1-3")


def _take_value(given_as: str, pending: deque[str]) -> str:
    if not pending:
        raise UsageError(f"{given_as} needs a value", f"write {given_as} VALUE or {given_as}=VALUE")
    following = pending[0]
    if following.startswith("-") and following != "-":
        raise UsageError(
            f"{given_as} needs a value, but is followed by the option {following}",
            f"if the value really starts with '-', write {given_as}={following}",
        )
    return pending.popleft()


def _apply(spec: MultiSpec, given: _Given) -> None:
    if given.for_multi:
        attribute = given.option.field
        convert = _MULTI_CONVERTERS.get(attribute, _as_given)
        setattr(spec, attribute, convert(given.value, given.given_as))
    elif given.selector is None:
        spec.global_options[given.option.name] = given.value
    else:
        spec.node_options.append(
            NodeOption(given.option.name, given.selector, given.value, given.given_as)
        )


def _as_given(value: OptionValue, given_as: str) -> OptionValue:
    return value


def _non_empty(value: OptionValue, given_as: str) -> str:
    if not isinstance(value, str) or not value:
        raise UsageError(f"{given_as} needs a non-empty value")
    return value


def _directory(value: OptionValue, given_as: str) -> Path:
    """Absolute (from where multi runs): the nodes run there, and their relative files too."""
    return Path(_non_empty(value, given_as)).expanduser().absolute()


def _timeout(value: OptionValue, given_as: str) -> float:
    try:
        seconds = float(_non_empty(value, given_as))
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds) or seconds < 0:
        raise UsageError(f"{given_as} {value}: not a number of seconds", "e.g. --timeout 30 or 2.5")
    return seconds


def _signal_option(value: OptionValue, given_as: str) -> Signals:
    return parse_signal(_non_empty(value, given_as), given_as=f"{given_as} {value}",
                        hint=SIGNAL_EXAMPLES)


_MULTI_CONVERTERS: dict[str, Callable[[OptionValue, str], object]] = {
    "hostname": _non_empty,
    "workdir": _directory,
    "executable": _non_empty,
    "timeout": _timeout,
    "signal": _signal_option,
}


# -- expansion -------------------------------------------------------------------------------


def expand_nodes(spec: MultiSpec, *, is_root: bool | None = None) -> list[NodeSpec]:
    """The nodes `spec` describes, each with its merged, %-expanded worker options.

    `is_root` (default: the effective uid is 0) picks the default pid and log file locations.
    """
    names = node_names_of(spec)
    merged = _merge_options(spec, names)
    defaults = dict(zip(("--pidfile", "--logfile"), default_node_files(is_root), strict=True))
    nodes = [
        _make_node(spec, position, name, {**defaults, **options})
        for position, (name, options) in enumerate(zip(names, merged, strict=True), 1)
    ]
    _check_own_pidfiles(nodes)
    return nodes


def node_names_of(spec: MultiSpec) -> list[str]:
    """The full node names the positionals describe (count form or names form), checked."""
    if not spec.positionals:
        raise UsageError(
            "no nodes given",
            "give a count (fleet multi start 3) or names (fleet multi start web img)",
        )
    if len(spec.positionals) == 1 and _NUMBER.fullmatch(spec.positionals[0]):
        given = spec.positionals[0]
        count = _whole(given)
        _check_count(count, f"node count {given[:20]}{'...' if len(given) > 20 else ''}")
        names = _counted_names(spec, count)
    else:
        names = _given_names(spec)
    for name in names:
        _check_name(name)
    _check_unique(names)
    return names


def _check_count(count: int, given: str) -> None:
    if count > MAX_NODES:
        raise UsageError(f"{given}: more than {MAX_NODES} nodes for one fleet multi command",
                         f"give at most {MAX_NODES}; for more, start them in groups with "
                         "--range-prefix or --prefix, or run them on more hosts")


def _counted_names(spec: MultiSpec, count: int) -> list[str]:
    if count < 1:
        raise UsageError(
            f"node count {count}: at least one node is needed", "e.g. fleet multi start 3"
        )
    if spec.prefix is not None:
        raise UsageError(
            "--prefix applies to node names, not to a node count",
            f"use --range-prefix={spec.prefix} for nodes {spec.prefix}1..{spec.prefix}{count}",
        )
    prefix = DEFAULT_RANGE_PREFIX if spec.range_prefix is None else spec.range_prefix
    return [f"{prefix}{number}@{spec.hostname}" for number in range(1, count + 1)]


def _given_names(spec: MultiSpec) -> list[str]:
    _check_count(len(spec.positionals), f"{len(spec.positionals)} node names")
    if spec.range_prefix is not None:
        raise UsageError(
            "--range-prefix applies to a node count, not to node names",
            f"use --prefix={spec.range_prefix} to prefix the names",
        )
    return [_full_name(given, spec) for given in spec.positionals]


def _full_name(given: str, spec: MultiSpec) -> str:
    if "@" in given:  # a full name: its host part may use %h, %n, %d (this host)
        return host_format(given, spec.hostname)
    return f"{spec.prefix or ''}{given}@{spec.hostname}"


def _check_name(name: str) -> None:
    short, _, host = name.partition("@")
    if _NUMBER.fullmatch(short) or _RANGE.fullmatch(short):
        raise UsageError(
            f"invalid node name {name!r}: after start, {short} selects nodes by position",
            "give one count (fleet multi start 3), or names that are not numbers (w1 w2)",
        )
    if short and host and "@" not in host and not _BAD_NAME_CHARS.intersection(name):
        return
    raise UsageError(
        f"invalid node name {name!r}",
        "a node name is NAME@HOST, neither part empty, with no spaces, '/', ',', '%' or second '@'",
    )


def _check_unique(names: list[str]) -> None:
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise UsageError(f"node {name} is given twice", "every node needs its own name")
        seen.add(name)


def _merge_options(spec: MultiSpec, names: list[str]) -> list[dict[str, OptionValue]]:
    """Global options, overridden per node by the per-node options in command-line order."""
    per_node = [dict(spec.global_options) for _ in names]
    for option in spec.node_options:
        for position in _resolve_selector(option.selector, names, option.given_as):
            per_node[position][option.name] = option.value
    return per_node


def _make_node(
    spec: MultiSpec, position: int, name: str, options: dict[str, OptionValue]
) -> NodeSpec:
    expanded = {
        option.name: _expand_value(option.name, options[option.name], name, spec.workdir)
        for option in WORKER_OPTIONS
        if option.name in options
    }
    return NodeSpec(
        name=name,
        index=position,
        options=expanded,
        passthrough=tuple(spec.passthrough),
        pidfile=Path(format_node(str(expanded["--pidfile"]), name, 0)),
        logfile=str(expanded["--logfile"]),
    )


def _expand_value(option: str, value: OptionValue, name: str, workdir: Path | None) -> OptionValue:
    if value is True:
        return True
    if option not in WORKER_EXPANDED:
        return format_node(value, name)
    return preformat_node(_path_template(value, workdir), name)


def _path_template(template: str, workdir: Path | None) -> str:
    """`~` expanded, and relative to `workdir` (where the node runs), still a % template."""
    head, slash, rest = template.partition("/")
    if head.startswith("~"):
        home = os.path.expanduser(head)
        if home != head:
            template = _escape(home) + slash + rest
    if workdir is not None and not os.path.isabs(template):
        template = f"{_escape(str(workdir))}/{template}"
    return template


def _escape(text: str) -> str:
    """A literal path as a % template: a `%` in it must not be read as a token."""
    return text.replace("%", "%%")


def _check_own_pidfiles(nodes: list[NodeSpec]) -> None:
    owners: dict[Path, str] = {}
    for node in nodes:
        owner = owners.setdefault(node.pidfile, node.name)
        if owner != node.name:
            raise UsageError(
                f"nodes {owner} and {node.name} would share the pid file {node.pidfile}",
                "give every node its own: put %n (short name) or %p (full name) in --pidfile,"
                " e.g. --pidfile=/run/fleet/%p.pid",
            )


# -- selecting -------------------------------------------------------------------------------


def select_nodes(nodes: Sequence[NodeSpec], selectors: Sequence[str]) -> list[NodeSpec]:
    """The nodes the selectors pick (`w1`, `3`, `1-3,7`, `w1@host`), in node order; none = all.

    Positions count in `nodes`. A selector that matches nothing is a UsageError.
    """
    if not selectors:
        return list(nodes)
    names = [node.name for node in nodes]
    picked: set[int] = set()
    for selector in selectors:
        picked.update(_resolve_selector(selector, names, None))
    return [nodes[position] for position in sorted(picked)]


def _resolve_selector(selector: str, names: list[str], given_as: str | None) -> list[int]:
    """0-based positions in `names` that `selector` picks, or a UsageError naming it."""
    picked: set[int] = set()
    try:
        for entry in selector.split(","):
            picked.update(_resolve_entry(entry, names))
    except _NoMatch as no_match:
        where = f" in {given_as}" if given_as else ""
        raise UsageError(
            f"node selector {selector!r}{where} matches no node: {no_match}",
            f"valid: {describe_nodes(names)}",
        ) from None
    return sorted(picked)


def _resolve_entry(entry: str, names: list[str]) -> list[int]:
    """A number is a position, `a-b` a range of positions, anything else a short or full name."""
    if _NUMBER.fullmatch(entry):
        return [_position(_whole(entry), len(names))]
    bounds = _RANGE.fullmatch(entry)
    if bounds:
        first, last = _whole(bounds[1]), _whole(bounds[2])
        if first > last:
            raise _NoMatch(f"the range {entry} is reversed (write {last}-{first})")
        return list(range(_position(first, len(names)), _position(last, len(names)) + 1))
    if not entry:
        raise _NoMatch("it has an empty entry")
    found = [at for at, name in enumerate(names) if entry in (name, name.partition("@")[0])]
    if not found:
        raise _NoMatch(f"no node is named {entry!r}")
    return found


def _whole(digits: str) -> int:
    """A decimal number typed by a user, where anything above 10**9 means "too many" (int()
    of thousands of digits is an error of its own, and slow)."""
    digits = digits.lstrip("0") or "0"
    return int(digits) if len(digits) <= 9 else 10**9


def _position(number: int, count: int) -> int:
    if number < 1:
        raise _NoMatch(f"there is no node {number}: positions start at 1")
    if number > count:
        raise _NoMatch(f"there is no node {number}: there are {count} nodes")
    return number - 1


def describe_nodes(names: Sequence[str]) -> str:
    """The valid selectors in a few words: `1-10 or w1..w10`, `1-3 or web, img, data`."""
    count = len(names)
    if not count:
        return "no nodes are known"
    positions = "1" if count == 1 else f"1-{count}"
    shorts = [name.partition("@")[0] for name in names]
    if count > 2 and _numbered(shorts):
        return f"{positions} or {shorts[0]}..{shorts[-1]}"
    labels = shorts if len(set(shorts)) == count else list(names)
    shown = ", ".join(labels[:10]) + (f", ... ({count} nodes)" if count > 10 else "")
    return f"{positions} or {shown}"


def _numbered(shorts: list[str]) -> bool:
    """True for w1, w2, ... wN (the count form's names)."""
    prefix = shorts[0][:-1]
    return all(short == f"{prefix}{number}" for number, short in enumerate(shorts, 1))


# -- `names` and `expand` --------------------------------------------------------------------


def node_names(nodes: Sequence[NodeSpec]) -> list[str]:
    """`fleet multi names`: the full node names."""
    return [node.name for node in nodes]


def expand_template(template: str, nodes: Sequence[NodeSpec]) -> list[str]:
    """`fleet multi expand TEMPLATE NODES...`: the template expanded once per node.

    %i and %I stay as they are: they are only known inside a node's processes.
    """
    return [format_node(template, node.name) for node in nodes]
