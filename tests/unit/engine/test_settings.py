"""Settings: one table, type-checked, layered (code < env < CLI), typos named."""

from __future__ import annotations

from datetime import timedelta

import pytest

from fleet import Fleet
from fleet.engine.settings import Settings
from fleet.operator_errors import ConfigError


def test_unknown_setting_names_the_closest_valid_key():
    with pytest.raises(ConfigError, match="did you mean 'worker_concurrency'"):
        Fleet("x", worker_concurency=2)
    app = Fleet("x")
    with pytest.raises(ConfigError, match="did you mean 'task_acks_late'"):
        app.conf.update(task_ack_late=True)
    with pytest.raises(AttributeError, match=r"result_expires"):
        _ = app.conf.result_expire


def test_settings_are_type_checked():
    app = Fleet("x")
    with pytest.raises(ConfigError, match="expected a whole number"):
        app.conf.update(worker_concurrency="many")
    with pytest.raises(ConfigError, match="too small"):
        app.conf.update(worker_concurrency=0)
    app.conf.update(result_expires=timedelta(hours=1))
    assert app.conf.result_expires == 3600.0


def test_environment_overrides_code_and_cli_overrides_environment():
    settings = Settings(env={"FLEET_RESULT_EXPIRES": "60", "FLEET_TASK_ROUTES": '{"a": "b"}'})
    settings.update(result_expires=10)
    assert settings.result_expires == 60.0 and settings.source("result_expires") == "env"
    assert settings.task_routes == {"a": "b"}
    settings.update({"result_expires": 5}, layer="cli")
    assert settings.result_expires == 5.0 and settings.source("result_expires") == "cli"


def test_an_unknown_fleet_environment_variable_is_an_error():
    with pytest.raises(ConfigError, match="FLEET_WORKER_CONCURRENCY"):
        Settings(env={"FLEET_WORKER_CONCURENCY": "3"})
    Settings(env={"FLEET_STATE_DIR": "/tmp", "FLEET_APP": "proj"})  # not settings: fine
