"""fleet.app_options: option records, the values every command reads the same way, and the
app the options name, with its settings in layers."""

from __future__ import annotations

import pytest

from fleet.app_options import (
    APP_OPTIONS,
    BOUNDS,
    COUNT,
    FLAG,
    SECONDS,
    AppOptions,
    Option,
    parse_overrides,
    split_list,
)
from fleet.operator_errors import UsageError


def test_an_option_knows_its_canonical_spelling_and_its_aliases():
    option = Option("loglevel", ("-l", "-L", "--loglevel"), "Level.")
    assert (option.name, option.aliases, option.takes_value) == \
        ("--loglevel", ("-l", "-L"), True)
    assert not Option("events", ("-E", "--events"), "", FLAG).takes_value


@pytest.mark.parametrize(("kind", "text", "value"), [
    (COUNT, "3", 3), (SECONDS, "2.5", 2.5), (SECONDS, "1", 1.0), (BOUNDS, "4,1", "4,1"),
])
def test_an_option_converts_what_it_accepts(kind, text, value):
    assert Option("x", ("--x",), "", kind).convert(text) == value


@pytest.mark.parametrize(("kind", "text"), [
    (COUNT, "0"), (COUNT, "-2"), (COUNT, "two"), (COUNT, "1.5"), (SECONDS, "0"),
    (SECONDS, "-1"), (SECONDS, "nan"), (SECONDS, "inf"), (SECONDS, "soon"), (FLAG, "yes"),
])
def test_an_option_refuses_bad_values_and_leaves_odd_ones_to_fleet_worker(kind, text):
    with pytest.raises(ValueError):
        Option("x", ("--x",), "", kind).convert(text)


def test_the_app_options_are_those_every_command_takes():
    assert [option.name for option in APP_OPTIONS] == \
        ["--app", "--broker", "--result-backend", "--workdir", "--config"]
    assert [option.name for option in APP_OPTIONS if not option.multi] == ["--workdir"]


def test_overrides_are_json_values_else_text():
    assert parse_overrides(["a=true", "b=3", "c=jobs", "d={\"x\": 1}", " e =[1]"]) == \
        {"a": True, "b": 3, "c": "jobs", "d": {"x": 1}, "e": [1]}
    with pytest.raises(UsageError, match="cannot read setting 'nope'"):
        parse_overrides(["nope"])
    with pytest.raises(UsageError, match="SETTING=VALUE"):
        parse_overrides(["=1"])


def test_a_comma_list_drops_blanks():
    assert split_list(" a, b,,c ,") == ["a", "b", "c"]
    assert split_list(None) == [] and split_list("") == []


@pytest.fixture
def project(tmp_path, monkeypatch):
    """A directory with a fleet.toml and an app module, and no FLEET_* variable."""
    for name in ("FLEET_APP", "FLEET_CONFIG", "FLEET_BROKER_URL", "FLEET_RESULT_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "code").mkdir()
    (tmp_path / "code" / "optsapp.py").write_text(
        "from fleet import Fleet\napp = Fleet('optsapp', task_default_queue='from-code')\n")
    (tmp_path / "fleet.toml").write_text(
        'app = "optsapp"\nworkdir = "code"\nbroker = "sqlite:///from-file.db"\n'
        '[settings]\ntask_default_queue = "from-file"\n')
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path / "code"))
    return tmp_path


def test_the_app_comes_from_fleet_toml_and_the_options_win_over_it(project):
    app = AppOptions().load_app()
    assert app.main == "optsapp"
    assert app.conf.task_default_queue == "from-file"  # the file beats the app's code
    assert app.conf.broker_url == "sqlite:///from-file.db"
    given = AppOptions(broker="sqlite:///from-option.db").load_app()
    assert given.conf.broker_url == "sqlite:///from-option.db"
    assert given.conf.source("broker_url") == "cli"


def test_the_app_is_loaded_once(project):
    options = AppOptions()
    assert options.load_app() is options.load_app()


def test_without_an_app_a_command_that_needs_none_gets_a_bare_one(tmp_path, monkeypatch):
    monkeypatch.delenv("FLEET_APP", raising=False)
    monkeypatch.delenv("FLEET_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)
    assert AppOptions().load_app(required=False).main is None
    with pytest.raises(UsageError, match="no app given"):
        AppOptions().load_app()


def test_a_workdir_that_cannot_be_entered_is_a_usage_error(tmp_path):
    with pytest.raises(UsageError, match="cannot use --workdir"):
        AppOptions(workdir=str(tmp_path / "missing")).enter_workdir()
