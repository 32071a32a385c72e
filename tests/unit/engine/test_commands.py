"""The one registry of remote commands, and its typed arguments (both ends read it)."""

from __future__ import annotations

import pytest

from fleet.engine import commands
from fleet.engine.commands import (
    COMMANDS,
    CommandError,
    check_arguments,
    get_command,
    parse_command_line,
)

ISSUE_INSPECT = {"ping", "active", "reserved", "scheduled", "revoked", "registered", "stats",
                 "active_queues", "query_task", "conf", "report"}
ISSUE_CONTROL = {"enable_events", "disable_events", "heartbeat", "rate_limit", "time_limit",
                 "revoke", "terminate", "add_consumer", "cancel_consumer", "pool_grow",
                 "pool_shrink", "autoscale", "pool_restart", "shutdown"}


def test_the_registry_has_every_command_with_kind_help_and_timeout():
    assert {c.name for c in commands.commands_of(commands.INSPECT)} == ISSUE_INSPECT
    assert {c.name for c in commands.commands_of(commands.CONTROL)} == ISSUE_CONTROL
    for cmd in COMMANDS.values():
        assert cmd.help and cmd.timeout > 0


def test_command_line_words_are_typed_by_the_registry():
    assert parse_command_line(COMMANDS["time_limit"], ["proj.add", "1.5"]) == \
        {"task": "proj.add", "soft": 1.5, "hard": None}
    assert parse_command_line(COMMANDS["terminate"], ["sigkill", "a", "b"]) == \
        {"signal": "KILL", "ids": ["a", "b"]}
    assert parse_command_line(COMMANDS["pool_grow"], []) == {"n": 1}
    assert parse_command_line(COMMANDS["terminate"], ["9", "a"])["signal"] == "KILL"


@pytest.mark.parametrize(("name", "words", "message"), [
    ("pool_grow", ["two"], "bad N 'two': expected a whole number such as 2"),
    ("time_limit", ["t", "soon"], "bad SOFT 'soon': expected a number of seconds"),
    ("terminate", ["NOPE", "x"], "unknown signal"),
    ("terminate", ["INT", "x"], "SIGINT does not stop a task"),
    ("rate_limit", ["t", "fast"], "invalid rate limit"),
    ("rate_limit", ["t"], "needs RATE"),
    ("ping", ["extra"], "unexpected 'extra'"),
    ("revoke", [], "needs IDS"),
])
def test_bad_arguments_say_what_is_wrong_and_the_usage(name, words, message):
    with pytest.raises(CommandError, match=message):
        parse_command_line(COMMANDS[name], words)


def test_api_arguments_are_checked_too():
    with pytest.raises(CommandError, match="takes no argument 'bogus'"):
        check_arguments(COMMANDS["ping"], {"bogus": 1})
    assert check_arguments(COMMANDS["revoke"], {"ids": "one"}) == {"ids": ["one"]}


def test_unknown_commands_get_a_did_you_mean_or_the_right_kind():
    with pytest.raises(CommandError, match="did you mean 'active'"):
        get_command("activ", commands.INSPECT)
    with pytest.raises(CommandError, match="use `fleet control shutdown`"):
        get_command("shutdown", commands.INSPECT)
