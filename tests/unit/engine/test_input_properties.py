"""Property-based tests (hypothesis) of everything a node or a client reads from outside:
message bodies, control requests and their arguments, events. Whatever the input, they end
in the project's own clear errors (MessageDecodeError, CommandError, ValueError from the JSON
reader), never in anything else; and whatever they accept is well typed."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.engine import events
from fleet.engine import message as codec
from fleet.engine.commands import (
    COMMANDS,
    CommandError,
    check_arguments,
    decode_request,
    parse_command_line,
)
from fleet.exceptions import MessageDecodeError
from tests.strategies import ANY_TEXT, BODIES, JSON_VALUES, PROPERTY

# -- message bodies ------------------------------------------------------------------------


@PROPERTY
@given(BODIES | st.binary(max_size=80))
def test_decoding_any_body_gives_a_message_or_a_decode_error(body):
    try:
        msg = codec.decode(body)
    except MessageDecodeError as exc:
        assert exc.one_line()
        return
    # what decode accepts is what a node relies on, and can be sent again as it is
    assert isinstance(msg.id, str) and msg.id and isinstance(msg.task, str) and msg.task
    assert isinstance(msg.args, list) and isinstance(msg.kwargs, dict)
    assert isinstance(msg.priority, int) and 0 <= msg.priority <= 9
    for value in (msg.eta, msg.expires):
        assert value is None or (isinstance(value, int | float) and math.isfinite(value))
    for key in ("time_limit", "soft_time_limit"):
        limit = msg.options.get(key)
        assert limit is None or (isinstance(limit, int | float) and limit >= 0)
    assert codec.decode(msg.encode()).to_dict() == msg.to_dict()


@PROPERTY
@given(BODIES | st.binary(max_size=80), st.integers(0, 200), st.integers(1, 100))
def test_the_json_reader_raises_only_value_errors(text, max_size, max_depth):
    try:
        value = codec.parse_json(text, max_size * 10, max_depth)
    except ValueError:
        return
    json.dumps(value, allow_nan=False)  # finite numbers only, nothing JSON cannot write


def test_a_body_of_100_kb_of_brackets_is_a_decode_error_not_a_recursion_error():
    # Regression (issue 13): RecursionError escaped decoding.
    with pytest.raises(MessageDecodeError, match="nested deeper than 64"):
        codec.decode("[" * 100_000)


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_non_finite_numbers_are_refused(token):
    # Regression (issue 13): NaN and Infinity were accepted by the decoder.
    body = json.dumps(codec.build("t", [0], {}).to_dict()).replace('"args": [0]',
                                                                    f'"args": [{token}]')
    with pytest.raises(MessageDecodeError, match=r"not a number JSON allows|out of range"):
        codec.decode(body)


def test_a_time_limit_that_is_not_a_number_is_refused_when_decoding():
    # Regression (issue 13): options.time_limit "abc" reached dispatch (a TypeError there).
    data = codec.build("t", [0], {}).to_dict()
    data["options"] = {"time_limit": "abc"}
    with pytest.raises(MessageDecodeError, match=r"field 'options\.time_limit' is 'abc'"):
        codec.decode(json.dumps(data))


# -- control requests and command arguments -------------------------------------------------

_ARG_NAMES = sorted({arg.name for cmd in COMMANDS.values() for arg in cmd.args})


@PROPERTY
@given(st.sampled_from(sorted(COMMANDS)),
       JSON_VALUES | st.dictionaries(st.sampled_from(_ARG_NAMES) | ANY_TEXT, JSON_VALUES,
                                     max_size=4))
def test_every_commands_argument_check_gives_values_or_a_command_error(name, arguments):
    cmd = COMMANDS[name]
    try:
        checked = check_arguments(cmd, arguments)
    except CommandError as exc:
        assert str(exc) and len(str(exc)) < 2000
        return
    assert set(checked) == {arg.name for arg in cmd.args}
    for arg in cmd.args:
        value = checked[arg.name]
        for item in value if arg.many and isinstance(value, list) else [value]:
            if isinstance(item, float):
                assert math.isfinite(item)


@PROPERTY
@given(st.sampled_from(sorted(COMMANDS)), st.lists(ANY_TEXT, max_size=4))
def test_command_lines_give_values_or_a_command_error(name, words):
    try:
        checked = parse_command_line(COMMANDS[name], words)
    except CommandError:
        return
    assert set(checked) == {arg.name for arg in COMMANDS[name].args}


@PROPERTY
@given(BODIES | JSON_VALUES.map(lambda v: json.dumps({"command": "ping", "arguments": v,
                                                      "destination": v, "deadline": v,
                                                      "ticket": v}, allow_nan=True)))
def test_any_control_request_is_read_or_refused_with_a_command_error(payload):
    try:
        request = decode_request(payload)
    except CommandError:
        return
    assert isinstance(request.command, str) and isinstance(request.arguments, dict)
    assert request.destination is None or all(isinstance(n, str) for n in request.destination)


# -- events ----------------------------------------------------------------------------------

_EVENT = st.fixed_dictionaries(
    {"type": st.sampled_from(["task-started", "task-succeeded", "task-failed",
                              "worker-heartbeat", "worker-offline"]) | JSON_VALUES},
    optional={key: JSON_VALUES for key in
              ["node", "timestamp", "uuid", "name", "runtime", "active", "processed",
               "concurrency", "loadavg", "freq", "exception", "args", "result", "pid"]})


@PROPERTY
@given(BODIES | st.lists(_EVENT, max_size=4).map(lambda e: json.dumps(e, allow_nan=True)))
def test_whatever_is_broadcast_as_events_folds_into_the_views_without_error(payload):
    from fleet.cli.events_view import FleetState, render

    state = FleetState()
    for event in events.decode(payload):
        assert isinstance(event["type"], str)
        assert isinstance(events.format_event(event), str)
        state.apply(event)
    assert render(state, 120, 40, 1.0)


@settings(PROPERTY, max_examples=60)  # (each example is a write transaction)
@given(st.lists(_EVENT, max_size=4).map(lambda e: json.dumps(e, allow_nan=True)))
def test_whatever_is_broadcast_as_events_goes_into_the_dashboard_history(payload):
    pytest.importorskip("starlette")
    _history().ingest(events.decode(payload))


_HISTORIES: list = []


def _history():
    """One in-memory dashboard history for every example (made once)."""
    if not _HISTORIES:
        import tempfile

        from fleet.dashboard.history import History

        _HISTORIES.append(History(tempfile.mkdtemp() + "/history.db"))
    return _HISTORIES[0]


# -- the CLI's JSON arguments --------------------------------------------------------------


@PROPERTY
@given(BODIES | JSON_VALUES.map(lambda v: json.dumps(v, allow_nan=True)))
def test_fleet_call_json_arguments_are_values_or_a_usage_error(text):
    from fleet.cli.tasks import _json_option
    from fleet.operator_errors import UsageError

    for option, kind in (("--args", list), ("--kwargs", dict)):
        try:
            value = _json_option(text, option, kind, "JSON")
        except UsageError as exc:
            assert exc.one_line().startswith(option) and exc.exit_code == 2
            continue
        assert isinstance(value, kind)
        json.dumps(value, allow_nan=False)
