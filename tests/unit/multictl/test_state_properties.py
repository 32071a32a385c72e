"""multi.toml under hypothesis: whatever the state file holds (not TOML, not UTF-8, every
field with a wrong type, NaN, huge numbers, deep nesting), loading it gives the records or
one ConfigError naming the file and what to do (exit 78), never "internal error"."""

from __future__ import annotations

from datetime import timedelta

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.multictl.state import FIELDS, NodeRecord, StateFile
from fleet.operator_errors import EXIT_CONFIG, FleetError

FAST = settings(database=None, max_examples=200, deadline=timedelta(seconds=2),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

scalars = st.one_of(st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
                    st.floats(), st.text(max_size=20), st.datetimes())
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)),
    max_leaves=10)
record_tables = st.dictionaries(st.one_of(st.sampled_from(sorted(FIELDS)), st.text(max_size=8)),
                                values, max_size=8)
documents = st.one_of(
    st.dictionaries(st.text(max_size=8), values, max_size=3),
    st.fixed_dictionaries({"nodes": st.one_of(
        values, st.dictionaries(st.text(max_size=12), st.one_of(record_tables, values),
                                max_size=4))}),
)


def _dumped(document: dict) -> bytes | None:
    try:
        return tomli_w.dumps(document).encode()
    except (TypeError, ValueError):
        return None


@pytest.mark.timeout(120)
@FAST
@given(st.one_of(st.binary(max_size=400), documents.map(_dumped).filter(bool),
                 st.sampled_from([b"[" * 3000, b"a = " + b"[" * 3000, b"\xff\xfe"])))
def test_any_state_file_loads_or_is_one_config_error_naming_it(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("state") / "multi.toml"
    path.write_bytes(data)
    try:
        records = StateFile(path).load()
    except FleetError as exc:
        assert exc.exit_code == EXIT_CONFIG
        assert str(path) in exc.one_line() and "move it away" in exc.one_line()
        return
    for name, record in records.items():
        assert isinstance(record, NodeRecord) and record.name == name
        assert record.argv and all(isinstance(arg, str) for arg in record.argv)


@pytest.mark.parametrize(("field", "value"), [
    ("pid", "abc"), ("pid", -1), ("pid", 2**40), ("create_time", "x"), ("create_time", True),
    ("argv", "python -m fleet"), ("argv", [1, 2]), ("argv", []), ("workdir", 3),
    ("started", 5), ("pidfile", ""),
])
def test_a_state_file_with_a_wrong_value_type_is_exit_78_not_an_internal_error(tmp_path, field,
                                                                              value):
    """A multi.toml with wrong value types used to end in exit 70, 'this is a bug'."""
    good = {"argv": ["python", "-m", "fleet", "worker"], "workdir": "/", "pidfile": "/w1.pid",
            "logfile": "/w1.log", "pid": 1, "create_time": 1.5, "started": ""}
    path = tmp_path / "multi.toml"
    path.write_text(tomli_w.dumps({"nodes": {"w1@h": {**good, field: value}}}))
    with pytest.raises(FleetError) as refused:
        StateFile(path).load()
    assert refused.value.exit_code == EXIT_CONFIG
    assert f"nodes.'w1@h'.{field}" in refused.value.one_line()


def test_the_state_file_is_written_readable_by_its_owner_only(tmp_path):
    state = StateFile(tmp_path / "state" / "multi.toml")
    state.remember([NodeRecord("w1@h", ["python", "-m", "fleet", "worker",
                                        "--broker=redis://:pw@h/0"], "/", "/w1.pid", "/w1.log")])
    assert (tmp_path / "state" / "multi.toml").stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700
