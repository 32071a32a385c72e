"""Celery's setting names (issue 17): read as fleet's with one warning each, or refused with
every such name listed; never silently ignored, wherever settings come from."""

from __future__ import annotations

import sys
import types
import warnings

import pytest

from fleet import Fleet
from fleet.config_file import check_config
from fleet.engine.celery_names import CELERY_NAMES, OLD_NAMES, lookup
from fleet.engine.settings import SETTINGS, Settings
from fleet.exceptions import CeleryNameWarning
from fleet.operator_errors import ConfigError

#: A celeryconfig module as Celery 3 projects have them (issue 17: ignored until now).
CELERYCONFIG = {
    "BROKER_URL": "redis://127.0.0.1:6390/1",
    "CELERY_RESULT_BACKEND": "redis://127.0.0.1:6390/2",
    "CELERY_TIMEZONE": "Europe/Paris",
    "CELERYBEAT_SCHEDULE": {"tick": {"task": "proj.tick", "schedule": 30.0}},
    "CELERYD_CONCURRENCY": 3,
    "CELERYD_PREFETCH_MULTIPLIER": 1,
    "CELERY_ACKS_LATE": True,
    "CELERY_TASK_RESULT_EXPIRES": 600,
    "CELERY_ROUTES": {"proj.resize": {"queue": "images"}},
    "CELERY_IMPORTS": ["proj.tasks"],
    "CELERYD_TASK_TIME_LIMIT": 60,
}
EXPECTED = {
    "broker_url": "redis://127.0.0.1:6390/1", "result_backend": "redis://127.0.0.1:6390/2",
    "timezone": "Europe/Paris", "worker_concurrency": 3, "worker_prefetch_multiplier": 1,
    "task_acks_late": True, "result_expires": 600.0, "include": ["proj.tasks"],
    "task_routes": {"proj.resize": {"queue": "images"}}, "task_time_limit": 60.0,
}


def _module(name, values, monkeypatch):
    module = types.ModuleType(name)
    for key, value in values.items():
        setattr(module, key, value)
    module.REDIS_HOST = "helper constants are not settings"  # ignored, as before
    monkeypatch.setitem(sys.modules, name, module)
    return module


def _effective(app):
    return {name: app.conf[name] for name in EXPECTED} | \
        {"beat": list(app.conf.beat_schedule)}


def test_the_table_knows_celerys_old_names_and_its_new_ones():
    assert OLD_NAMES["BROKER_URL"] == "broker_url"
    assert OLD_NAMES["CELERYD_CONCURRENCY"] == "worker_concurrency"
    assert OLD_NAMES["CELERYBEAT_SCHEDULE"] == "beat_schedule"
    assert OLD_NAMES["CELERY_TASK_RESULT_EXPIRES"] == "result_expires"
    assert OLD_NAMES["CELERY_SEND_EVENTS"] == "worker_send_task_events"
    assert {"task_always_eager", "accept_content", "worker_pool"} <= CELERY_NAMES
    assert lookup("CELERY_BROKER_URL", SETTINGS).fleet == "broker_url"  # Django's spelling
    assert lookup("imports", SETTINGS).fleet == "include"
    assert lookup("task_serializer", SETTINGS).fleet is None
    assert lookup("broker_url", SETTINGS) is None and lookup("REDIS_HOST", SETTINGS) is None


def test_a_celeryconfig_module_is_read_with_one_warning_per_old_name(monkeypatch):
    _module("celeryconfig_test", CELERYCONFIG, monkeypatch)
    app = Fleet("proj")
    with pytest.warns(CeleryNameWarning) as caught:
        app.config_from_object("celeryconfig_test")
    assert _effective(app) == EXPECTED | {"beat": ["tick"]}
    texts = [str(w.message) for w in caught]
    assert len(texts) == len(CELERYCONFIG)
    assert "celeryconfig_test: BROKER_URL is Celery's name for broker_url: read as " \
           "broker_url" in texts[0] or any("BROKER_URL is Celery's name" in t for t in texts)
    assert any("CELERYD_CONCURRENCY is Celery's name for worker_concurrency" in t
               for t in texts)


def _from_keywords():
    return Fleet("p", **CELERYCONFIG)


def _from_a_dict():
    app = Fleet("p")
    app.config_from_object(CELERYCONFIG)
    return app


def _from_conf_update():
    app = Fleet("p")
    app.conf.update(CELERYCONFIG)
    return app


@pytest.mark.parametrize("make", [_from_keywords, _from_a_dict, _from_conf_update])
def test_a_dict_the_apps_keywords_and_conf_update_read_them_too(make):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        app = make()
    assert _effective(app) == EXPECTED | {"beat": ["tick"]}
    assert {type(w.message) for w in caught} == {CeleryNameWarning}


def test_names_fleet_has_no_equivalent_for_are_refused_all_at_once(monkeypatch):
    _module("celeryconfig_bad", {"BROKER_URL": "redis://x", "CELERY_TASK_SERIALIZER": "json",
                                 "CELERY_ALWAYS_EAGER": True, "BROKER_POOL_LIMIT": 3},
            monkeypatch)
    with pytest.raises(ConfigError) as raised, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Fleet("p").config_from_object("celeryconfig_bad")
    text = raised.value.one_line()
    assert "celeryconfig_bad: Celery setting(s) fleet has no equivalent for" in text
    assert "CELERY_TASK_SERIALIZER (fleet messages and results are always JSON)" in text
    assert "CELERY_ALWAYS_EAGER (call the task" in text and "BROKER_POOL_LIMIT" in text
    assert "fleet upgrade settings FILE" in text
    with pytest.raises(ConfigError, match="task_serializer"):
        Fleet("p").conf.update(task_serializer="json")  # Celery 4's name: refused too


def test_the_environment_reads_celery_names_after_fleet_prefix():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        settings = Settings(env={"FLEET_CELERYD_CONCURRENCY": "5",
                                 "FLEET_CELERY_ROUTES": '{"a": "q"}'})
    assert sorted(str(w.message).split(" is ")[0] for w in caught) == [
        "FLEET_ environment: FLEET_CELERYD_CONCURRENCY", "FLEET_ environment: FLEET_CELERY_ROUTES"]
    assert "Celery's name for FLEET_WORKER_CONCURRENCY" in str(caught[0].message) + \
        str(caught[1].message)
    assert settings.worker_concurrency == 5 and settings.task_routes == {"a": "q"}
    assert settings.source("worker_concurrency") == "env"
    with pytest.raises(ConfigError, match="CELERY_ACCEPT_CONTENT"):
        Settings(env={"FLEET_CELERY_ACCEPT_CONTENT": '["json"]'})


def test_fleet_toml_reads_them_and_config_check_lists_the_refused(tmp_path):
    data = {"settings": {"CELERYD_CONCURRENCY": 2, "CELERY_ENABLE_UTC": True,
                         "task_acks_late": True}}
    with pytest.warns(CeleryNameWarning, match=r"\[settings\] CELERYD_CONCURRENCY"):
        config, problems = check_config(data, tmp_path / "fleet.toml")
    assert config.settings == {"worker_concurrency": 2, "task_acks_late": True}
    [problem] = problems
    assert "CELERY_ENABLE_UTC (fleet always keeps times as UTC" in problem.one_line()


def test_a_namespace_reads_only_prefixed_names_and_celerys_own(monkeypatch):
    settings = types.SimpleNamespace(
        FLEET_BROKER_URL="redis://127.0.0.1:6390/3", FLEET_TASK_ACKS_LATE=True,
        CELERY_TIMEZONE="Asia/Tokyo", DEBUG=True, S3_BUCKET="other libraries' settings",
        SECRET_KEY="x", INSTALLED_APPS=["shop"])
    app = Fleet("p")
    with pytest.warns(CeleryNameWarning, match="CELERY_TIMEZONE is Celery's name for "
                                               "FLEET_TIMEZONE: read as FLEET_TIMEZONE"):
        app.config_from_object(settings, namespace="FLEET")
    assert (app.conf.broker_url, app.conf.task_acks_late, app.conf.timezone) == \
        ("redis://127.0.0.1:6390/3", True, "Asia/Tokyo")
    with pytest.raises(ConfigError, match="did you mean 'broker_url'"):
        Fleet("p").config_from_object({"FLEET_BROKR_URL": "x"}, namespace="FLEET")


def test_a_settings_object_not_set_up_yet_is_read_at_first_use():
    class Lazy:
        """Like Django's settings while Django starts: not configured, read later."""

        configured = False
        reads = 0

        def __dir__(self):
            Lazy.reads += 1
            return ["FLEET_TASK_DEFAULT_QUEUE"]

        FLEET_TASK_DEFAULT_QUEUE = "jobs"

    app = Fleet("p")
    app.config_from_object(Lazy(), namespace="FLEET")
    assert Lazy.reads == 0
    assert app.conf.task_default_queue == "jobs" and Lazy.reads == 1
    app.conf.update(task_default_queue="later")  # updates after it still win
    assert app.conf.task_default_queue == "later"


def test_module_attribute_specs_and_their_errors(monkeypatch):
    holder = _module("settings_holder", {}, monkeypatch)
    holder.conf = {"task_default_queue": "from-attr"}
    app = Fleet("p")
    app.config_from_object("settings_holder:conf")
    assert app.conf.task_default_queue == "from-attr"
    with pytest.raises(ConfigError, match="has no attribute 'nope'"):
        app.config_from_object("settings_holder:nope")
    with pytest.raises(ConfigError, match="cannot import settings module"):
        app.config_from_object("no_such_module_here:conf")


def test_a_dict_may_hold_no_unknown_name_while_a_module_keeps_its_own_constants(monkeypatch):
    with pytest.raises(ConfigError, match="unknown setting 'FOO'"):
        Fleet("p").config_from_object({"FOO": 1})
    _module("settings_with_constants", {"task_default_queue": "q", "TIMEOUT": 3}, monkeypatch)
    app = Fleet("p")
    app.config_from_object("settings_with_constants")
    assert app.conf.task_default_queue == "q"
