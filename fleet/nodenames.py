"""Node names (`w1@host.example.com`) and the `%` expansions, with one meaning everywhere.

The same tokens mean the same thing in `fleet multi` option values, in `fleet worker -n`,
`--pidfile` and `--logfile`, and in `fleet multi expand`:

    %p  full node name            w1@host.example.com
    %n  short name                w1
    %h  host part                 host.example.com
    %d  domain                    example.com
    %i  pool process index        0 in the main process, 1..N in children
    %I  "-" + index in a child    "" in the main process, "-1", "-2", ... in children
    %%  a literal %

`%i`/`%I` are only known inside a node's processes: `format_node` leaves them untouched
when no index is given, so a log file template can be expanded later by each child.
`preformat_node` is the first of two passes (multi, then the node): it also keeps `%%`.
"""

from __future__ import annotations

import re
import socket
from functools import cache

from fleet.operator_errors import UsageError

TOKENS = {
    "p": "full node name",
    "n": "short name",
    "h": "host part",
    "d": "domain",
    "i": "pool process index (0 in the main process)",
    "I": "'-' + pool process index in a child, empty in the main process",
    "%": "a literal %",
}

_TOKEN = re.compile(r"%(.?)", re.DOTALL)


@cache
def gethostname() -> str:
    """This machine's host name (fully qualified when the resolver knows it)."""
    name = socket.gethostname()
    if "." not in name:
        try:
            fqdn = socket.getfqdn(name)
        except OSError:
            fqdn = name
        if fqdn.startswith(name + ".") and not fqdn.endswith((".localdomain", ".arpa")):
            name = fqdn
    return name


def split_node(nodename: str) -> tuple[str, str]:
    """'w1@host' -> ('w1', 'host'); a name without '@' gets this machine's host."""
    if "@" in nodename:
        short, _, host = nodename.partition("@")
        return short, host
    return nodename, gethostname()


def domain_of(host: str) -> str:
    return host.partition(".")[2]


def valid_tokens_text() -> str:
    return ", ".join(f"%{token} ({meaning})" for token, meaning in TOKENS.items())


def expand(template: str, values: dict[str, str], *, keep: str = "") -> str:
    """Replace `%x` tokens from `values`; tokens in `keep` are left as they are.

    `keep` may include "%" to leave `%%` escaped, for a template that is expanded again later.
    An unknown token (or a lone % at the end) is a `UsageError` that lists the valid ones.
    """

    def replace(match: re.Match) -> str:
        token = match.group(1)
        # `token and`: a lone % at the end has token "", and "" is in every string.
        if token and token in keep:
            return match.group(0)
        if token == "%":
            return "%"
        if token in values:
            return values[token]
        shown = f"%{token}" if token else "a lone % at the end"
        raise UsageError(
            f"unknown expansion {shown} in {template!r}",
            f"valid ones are {valid_tokens_text()}; write %% for a literal %",
        )

    return _TOKEN.sub(replace, template)


def _node_values(nodename: str) -> dict[str, str]:
    short, host = split_node(nodename)
    return {"p": f"{short}@{host}", "n": short, "h": host, "d": domain_of(host)}


def format_node(template: str, nodename: str, index: int | None = None) -> str:
    """Expand `template` for the node `nodename` (and pool index `index`, if known)."""
    values = _node_values(nodename)
    if index is None:
        return expand(template, values, keep="iI")
    values["i"] = str(index)
    values["I"] = f"-{index}" if index else ""
    return expand(template, values)


def preformat_node(template: str, nodename: str) -> str:
    """Expand what `fleet multi` knows about a node and leave a template for the node itself.

    For values the node expands again (its `--pidfile` and `--logfile`): `%i`, `%I` and `%%`
    are left as they are, and a `%` inside a substituted value is escaped, so the node's own
    `format_node` pass gives the same path. (With `format_node`, `%%` would reach the node as a
    lone `%` and break or change its expansion.)
    """
    escaped = {token: value.replace("%", "%%") for token, value in _node_values(nodename).items()}
    return expand(template, escaped, keep="iI%")


def host_format(name: str, hostname: str | None = None) -> str:
    """Expand %h/%n/%d in a node name given to `fleet worker -n`, using this host.

    `-n w1` (no '@') becomes `w1@<this host>`, as celery users expect.
    """
    host = hostname or gethostname()
    values = {"h": host, "n": host.partition(".")[0], "d": domain_of(host), "p": host}
    expanded = expand(name, values)
    if "@" not in expanded:
        expanded = f"{expanded}@{host}"
    return expanded
