"""fleet.multi under hypothesis: whatever a `fleet multi` command line holds, parsing,
expanding, selecting and templating raise nothing but fleet's own errors (FleetError), and
answer at once (sizes are bounded; the deadline fails a slow example)."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.multi import (
    MAX_NODES,
    MULTI_OPTIONS,
    WORKER_OPTIONS,
    expand_nodes,
    expand_template,
    parse_multi_args,
    select_nodes,
)
from fleet.operator_errors import EXIT_USAGE, FleetError

FAST = settings(database=None, max_examples=150, deadline=timedelta(seconds=2),
                suppress_health_check=[HealthCheck.too_slow])

SPELLINGS = sorted({s for o in (*WORKER_OPTIONS, *MULTI_OPTIONS) for s in (o.name, *o.aliases)})
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=12)
numbers = st.one_of(st.integers(min_value=-3, max_value=MAX_NODES + 3).map(str),
                    st.integers(min_value=1, max_value=6000).map(lambda n: "9" * n))
selector = st.one_of(
    numbers, text,
    st.tuples(numbers, numbers).map("-".join),
    st.lists(st.one_of(numbers, text), min_size=1, max_size=4).map(",".join),
)
option = st.one_of(
    st.sampled_from(SPELLINGS),
    st.tuples(st.sampled_from(SPELLINGS), selector).map(":".join),
    st.tuples(st.sampled_from(SPELLINGS), text).map("=".join),
    st.tuples(st.sampled_from(SPELLINGS), selector, text).map(lambda p: f"{p[0]}:{p[1]}={p[2]}"),
    st.sampled_from(["-TERM", "-9", "-KILL", "-999", "-NOPE", "--", "-", "--signal=HUP"]),
)
token = st.one_of(option, numbers, text, st.sampled_from(["%n", "%h", "%%", "%i", "%I", "w1@%h",
                                                           "a@b", "@", "%", "1-3,7"]))
argv = st.lists(token, max_size=14)


def _expand(args: list[str], is_root: bool) -> list:
    spec = parse_multi_args(args, hostname="host.example")
    return expand_nodes(spec, is_root=is_root)


@pytest.mark.timeout(120)
@FAST
@given(argv, st.booleans())
def test_any_command_line_expands_or_is_a_fleet_error(args, is_root):
    try:
        nodes = _expand(args, is_root)
    except FleetError as exc:
        assert exc.one_line()
        return
    assert 1 <= len(nodes) <= MAX_NODES
    assert len({node.name for node in nodes}) == len(nodes)


@pytest.mark.timeout(120)
@FAST
@given(st.integers(min_value=1, max_value=4), st.lists(selector, max_size=4),
       st.text(max_size=30))
def test_any_selector_or_template_on_real_nodes_is_answered_or_a_fleet_error(count, selectors,
                                                                            template):
    nodes = _expand([str(count), "-A", "proj"], is_root=True)
    try:
        picked = select_nodes(nodes, selectors)
    except FleetError as exc:
        assert exc.exit_code == EXIT_USAGE
    else:
        assert all(node in nodes for node in picked)
    with contextlib.suppress(FleetError):
        assert len(expand_template(template, nodes)) == count


@pytest.mark.parametrize("count", [str(MAX_NODES + 1), "100000", "9" * 5000, "0" * 4999 + "7"])
def test_node_counts_are_capped_at_once_with_a_usage_error(count):
    """`fleet multi show 100000` took 7 s and 200 MB; larger counts never came back."""
    if count.lstrip("0") == "7":
        assert len(_expand([count], is_root=True)) == 7
        return
    with pytest.raises(FleetError, match=f"more than {MAX_NODES} nodes") as refused:
        _expand([count], is_root=True)
    assert refused.value.exit_code == EXIT_USAGE and len(refused.value.one_line()) < 300


def test_as_many_names_as_the_cap_allows_expand_quickly():
    nodes = _expand([str(MAX_NODES), "-c:1-500", "3"], is_root=True)
    assert len(nodes) == MAX_NODES
    with pytest.raises(FleetError, match="more than"):
        _expand([f"n{i}" for i in range(MAX_NODES + 1)], is_root=True)
