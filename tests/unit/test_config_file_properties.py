"""fleet.toml and its [multi] section under hypothesis: any file, any structure, any value
(NaN, infinities, huge numbers, deep nesting, wrong types) is read or refused with fleet's
own ConfigError, never anything else, and at once."""

from __future__ import annotations

import contextlib
import math
from datetime import timedelta

import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.config_file import TOP_LEVEL_KEYS, check_config, load_config, parse_config
from fleet.engine.settings import SETTINGS
from fleet.multictl.toml_section import MULTI_KEYS, WORKER_KEYS, check_multi, multi_argv
from fleet.operator_errors import FleetError

FAST = settings(database=None, max_examples=150, deadline=timedelta(seconds=2),
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["redis://:pw@h/0", "sqlite:///x.db", "proj", "10/s", "1-3", "a,b", ""]),
    st.datetimes(), st.dates(), st.times(),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12)
known_keys = st.sampled_from(sorted({*TOP_LEVEL_KEYS, *SETTINGS, *WORKER_KEYS, *MULTI_KEYS,
                                     "nodes", "groups", "schedule", "task"}))
keys = st.one_of(known_keys, st.text(max_size=12))
tables = st.dictionaries(keys, values, max_size=6)
multi_sections = st.dictionaries(keys, st.one_of(values, st.dictionaries(
    keys, st.dictionaries(keys, values, max_size=4), max_size=3)), max_size=6)
documents = st.fixed_dictionaries({}, optional={
    "app": values, "workdir": values, "broker": values, "result_backend": values,
    "settings": st.one_of(tables, st.dictionaries(st.sampled_from(sorted(SETTINGS)), values,
                                                  max_size=6), values),
    "multi": st.one_of(multi_sections, values),
    "beat": st.one_of(st.fixed_dictionaries({"schedule": st.dictionaries(
        st.text(max_size=8), tables, max_size=3)}), values),
})


def _toml_safe(value: object) -> bool:
    """tomli-w writes what TOML can hold (no None, no NaN key paths it refuses)."""
    try:
        tomli_w.dumps({"v": value})
    except (TypeError, ValueError):
        return False
    return True


@pytest.mark.timeout(120)
@FAST
@given(documents)
def test_any_parsed_document_is_checked_into_fleet_errors_only(document):
    config, problems = check_config(document)
    assert all(isinstance(problem, FleetError) for problem in problems)
    if not problems:
        config.engine_settings()
        if config.multi:
            try:
                argv = multi_argv(config)
            except FleetError:
                return
            assert all(isinstance(arg, str) for arg in argv)


@pytest.mark.timeout(120)
@FAST
@given(multi_sections)
def test_any_multi_section_is_checked_or_refused(section):
    from fleet.config_file import FileConfig

    config = FileConfig(multi=section)
    problems = check_multi(config)
    assert all(isinstance(problem, FleetError) for problem in problems)
    with contextlib.suppress(FleetError):
        multi_argv(config)


@pytest.mark.timeout(120)
@FAST
@given(st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode),
                 documents.filter(_toml_safe).map(lambda d: tomli_w.dumps(d).encode())))
def test_any_file_is_read_or_refused_with_a_config_error(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("toml") / "fleet.toml"
    path.write_bytes(data)
    try:
        config = load_config(path)
    except FleetError as exc:
        assert exc.exit_code == 78 and str(path) in exc.one_line()
        return
    assert config.path == path


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, 10**30, "x" * 10_000])
def test_extreme_setting_values_are_config_errors(value):
    for name in SETTINGS:
        with contextlib.suppress(FleetError):
            parse_config({"settings": {name: value}})
