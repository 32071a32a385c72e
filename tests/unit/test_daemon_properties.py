"""Pid files under hypothesis: whatever a pid file holds, reading it never raises, and taking
it over either works (a stale pid) or is refused with fleet's own error, never removing a
file that is not a pid file."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.daemon import MAX_PID, PidFile, read_pidfile
from fleet.operator_errors import FleetError

FAST = settings(database=None, max_examples=200, deadline=timedelta(seconds=2),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

contents = st.one_of(
    st.binary(max_size=200),
    st.text(max_size=60).map(str.encode),
    st.tuples(st.integers(min_value=-5, max_value=2**70), st.text(max_size=20)).map(
        lambda pair: f"{pair[0]}\n{pair[1]}\n".encode()),
    st.sampled_from([b"", b"\n", b"\xb2\n", b"\xd9\xa3\n", "\u0663\n".encode(), b"0\n",
                     b"1" * 5000]),
)


@pytest.mark.timeout(120)
@FAST
@given(contents)
def test_reading_any_pid_file_gives_a_pid_or_none(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("pid") / "w1.pid"
    path.write_bytes(data)
    found = read_pidfile(path)
    assert found is None or 0 < found.pid <= MAX_PID


@pytest.mark.timeout(120)
@FAST
@given(contents)
def test_taking_over_any_pid_file_works_or_is_a_fleet_error_leaving_it_alone(tmp_path_factory,
                                                                           data):
    path = tmp_path_factory.mktemp("pid") / "w1.pid"
    path.write_bytes(data)
    pidfile = PidFile(path, "w1@h")
    try:
        pidfile.acquire()
    except FleetError as exc:
        assert str(path) in exc.one_line()
        assert path.read_bytes() == data  # refused: never removed, never rewritten
        return
    try:
        assert read_pidfile(path).pid == os.getpid()
    finally:
        pidfile.release()
