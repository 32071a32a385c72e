"""How an error that escapes a command is reported: its line and its exit code."""

from __future__ import annotations

import sqlite3

import pytest
import redis

from fleet.exceptions import BrokerDataError
from fleet.operator_errors import (
    EXIT_BROKER,
    EXIT_DATA,
    EXIT_SOFTWARE,
    describe_failure,
    is_broker_data_error,
)


@pytest.mark.parametrize("exc", [
    redis.exceptions.ResponseError("WRONGTYPE Operation against a key holding the wrong kind"),
    redis.exceptions.ResponseError("Error running script (call to f_1): user_script:5: bad"),
    redis.exceptions.DataError("Invalid input of type: 'dict'"),
    sqlite3.DatabaseError("file is not a database"),
    sqlite3.IntegrityError("UNIQUE constraint failed: messages.id"),
    sqlite3.OperationalError("Could not decode to UTF-8 column 'body' with text 'x'"),
])
def test_a_data_error_from_the_broker_is_never_called_unreachable(exc):
    # Regression (issue 13): a Redis ResponseError (WRONGTYPE, a failing script) exited 75
    # "broker unreachable".
    line, code = describe_failure(exc)
    assert code == EXIT_DATA and is_broker_data_error(exc)
    assert line.startswith("broker data error: ") and "reachable" not in line


@pytest.mark.parametrize("exc", [redis.exceptions.ConnectionError("refused"),
                                 redis.exceptions.TimeoutError("timed out"),
                                 sqlite3.OperationalError("database is locked"),
                                 ConnectionRefusedError("refused")])
def test_a_broker_out_of_reach_is_a_temporary_failure(exc):
    line, code = describe_failure(exc)
    assert code == EXIT_BROKER and "check that the broker is reachable" in line


def test_fleets_own_data_error_and_a_bug_keep_their_codes():
    assert describe_failure(BrokerDataError("the stored result of task x cannot be read"))[1] \
        == EXIT_DATA
    assert describe_failure(ValueError("oops"))[1] == EXIT_SOFTWARE
