"""fleet.multictl.targets: one rule for NODES after start (they select remembered nodes: a
number is a position, never a count), and --spec, which previews what start would run."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from fleet.multi import parse_multi_args
from fleet.multictl import targets
from fleet.multictl.state import NodeRecord, StateFile
from fleet.operator_errors import EXIT_USAGE, FleetError, UsageError


def remember(tmp_path: Path, *shorts: str) -> StateFile:
    state = StateFile(tmp_path / "multi.toml")
    state.remember([NodeRecord(f"{short}@box", ["py", "-m", "fleet", "worker", "-n",
                                                f"{short}@box"], str(tmp_path), "p", "l")
                    for short in shorts])
    return state


def picked(state: StateFile, command: str, cmdline: str) -> list[str]:
    spec = parse_multi_args(shlex.split(cmdline), hostname="box")
    targets.check_form(command, spec)
    leading = targets.take_leading(command, spec)
    records = targets.targets(state, spec, command)
    if command == "get":
        records = [targets.one(records, leading)]
    return [record.name for record in records]


@pytest.mark.parametrize("command", ["stop", "stopwait", "restart", "reload", "kill",
                                     "status", "show", "names"])
def test_a_number_is_a_position_and_a_range_a_range_of_positions_on_every_command(
        tmp_path, command):
    # Issue 17: `stop 3` was the 3rd remembered node, `names 2` made two new names and
    # `names 1-3` a node called `1-3`.
    state = remember(tmp_path, "web", "img", "w1", "w2")
    assert picked(state, command, "3") == ["w1@box"]
    assert picked(state, command, "1-2") == ["web@box", "img@box"]
    assert picked(state, command, "w2 1") == ["web@box", "w2@box"]  # in the order started
    assert picked(state, command, "2,w2@box") == ["img@box", "w2@box"]
    assert picked(state, command, "") == ["web@box", "img@box", "w1@box", "w2@box"]


def test_get_and_expand_take_their_argument_first_then_select_the_same_way(tmp_path):
    state = remember(tmp_path, "web", "img", "w1")
    assert picked(state, "get", "2") == ["img@box"]
    assert picked(state, "get", "w1") == ["w1@box"]
    assert picked(state, "expand", "%n.log 2-3") == ["img@box", "w1@box"]
    with pytest.raises(UsageError, match="get prints one node's command, but '1-2' selects 2"):
        picked(state, "get", "1-2")
    with pytest.raises(UsageError, match="get needs a NODE"):
        picked(state, "get", "")
    with pytest.raises(UsageError, match="expand needs a TEMPLATE"):
        picked(state, "expand", "")


def test_a_selector_that_matches_no_remembered_node_is_an_error(tmp_path):
    state = remember(tmp_path, "w1", "w2")
    with pytest.raises(UsageError, match="there is no node 3: there are 2 nodes") as caught:
        picked(state, "stop", "3")
    assert caught.value.exit_code == EXIT_USAGE
    with pytest.raises(UsageError, match="no node is named 'w9'"):
        picked(state, "names", "w9")


def test_with_no_remembered_nodes_the_previews_point_at_spec(tmp_path):
    empty = StateFile(tmp_path / "multi.toml")
    with pytest.raises(FleetError, match="no nodes are known") as names:
        picked(empty, "names", "3")
    assert "add --spec (fleet multi names --spec 3)" in names.value.one_line()
    with pytest.raises(FleetError) as stop:
        picked(empty, "stop", "")
    assert "--spec" not in stop.value.one_line()


def test_spec_reads_nodes_and_options_as_start_does_and_starts_nothing(tmp_path):
    state = remember(tmp_path, "web")  # not looked at
    assert picked(state, "names", "--spec 3") == ["w1@box", "w2@box", "w3@box"]
    assert picked(state, "names", "--spec web img --prefix x-") == ["x-web@box", "x-img@box"]
    assert picked(state, "get", "--spec 2 3 -A proj") == ["w2@box"]
    assert picked(state, "expand", "--spec %n 3") == ["w1@box", "w2@box", "w3@box"]
    spec = parse_multi_args(["--spec", "2", "-A", "proj", "-c:2", "4"], hostname="box")
    [first, second] = targets.targets(state, spec, "show")
    assert "--concurrency=4" in second.argv and "--concurrency=4" not in first.argv
    assert not (tmp_path / "run").exists()
    with pytest.raises(UsageError, match="--spec: no nodes given"):
        picked(state, "show", "--spec")


@pytest.mark.parametrize("command", ["start", "stop", "stopwait", "restart", "reload", "kill",
                                     "status"])
def test_spec_is_only_for_the_previews(command):
    if command == "start":
        targets.check_form(command, parse_multi_args(["3"], hostname="box"))
        return
    with pytest.raises(UsageError, match=f"{command}: --spec is for show, get, names, expand"):
        targets.check_form(command, parse_multi_args(["--spec", "3"], hostname="box"))


@pytest.mark.parametrize(("command", "cmdline", "named"), [
    ("stop", "3 -A proj", "--app"),
    ("restart", "-c:1 4", "-c:1"),
    ("names", "3 --concurrency 2", "--concurrency"),
    ("status", "-- task_acks_late=true", "--"),
])
def test_worker_options_after_start_are_an_error_never_silently_unused(command, cmdline,
                                                                        named):
    spec = parse_multi_args(shlex.split(cmdline), hostname="box")
    with pytest.raises(UsageError, match=f"{command}: {named} is for start") as caught:
        targets.check_form(command, spec)
    assert ("add --spec" in caught.value.one_line()) == (command in targets.PREVIEWS)
    targets.check_form(command, parse_multi_args(["1", "--timeout", "5", "-q"],
                                                 hostname="box"))  # multi's own: fine


def test_start_of_the_remembered_nodes_refuses_options_it_would_not_use():
    with pytest.raises(UsageError, match="start with no NODES starts the remembered nodes "
                                         "with their own options, so --concurrency would "
                                         "not be used"):
        targets.check_restart_form(parse_multi_args(["-c", "4"], hostname="box"))
    targets.check_restart_form(parse_multi_args(["--timeout", "5"], hostname="box"))
