"""The engine's pure parts: settings, the app, messages, routing, rate limits, results."""

from __future__ import annotations

import json
import types
from datetime import timedelta

import pytest

from fleet import Fleet
from fleet.config_file import parse_config
from fleet.engine import message as codec
from fleet.engine.ratelimit import TokenBucket, parse_rate
from fleet.engine.routing import route
from fleet.engine.settings import Settings
from fleet.exceptions import EncodeError, MessageDecodeError, NotRegistered
from fleet.operator_errors import AppLoadError, ConfigError


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


def test_config_from_object_validates_every_setting():
    app = Fleet("x")
    app.config_from_object({"task_default_queue": "jobs"})
    assert app.conf.task_default_queue == "jobs"
    module = types.SimpleNamespace(result_expires=5, broker_urll="redis://")
    with pytest.raises(ConfigError, match="did you mean 'broker_url'"):
        app.config_from_object(module)


def test_fleet_toml_sections_and_errors():
    config = parse_config({"app": "proj", "broker": "redis://x/0",
                           "settings": {"task_default_queue": "q"}})
    assert config.engine_settings() == {"task_default_queue": "q", "broker_url": "redis://x/0"}
    with pytest.raises(ConfigError, match="did you mean 'settings'"):
        parse_config({"setings": {}})
    with pytest.raises(ConfigError, match=r"did you mean 'settings\.result_expires'"):
        parse_config({"settings": {"result_expire": 1}})


def test_task_names_default_to_module_and_function():
    app = Fleet("proj")

    @app.task
    def add(x, y):
        return x + y

    @app.task(name="custom.name", bind=True)
    def bound(self):
        return self.name

    assert add.name == f"{__name__}.add"
    assert add(2, 2) == 4
    assert bound() == "custom.name"
    assert set(app.tasks) == {add.name, "custom.name"}
    with pytest.raises(NotRegistered, match="did you mean"):
        app.get_task(f"{__name__}.ad")
    with pytest.raises(TypeError, match="unknown task option 'retries'"):
        app.task(retries=3)(lambda: None)


def test_messages_round_trip_and_refuse_what_json_cannot_carry():
    msg = codec.build("t.add", (1, 2), {"k": [1, "x"]}, queue="q", priority=5)
    decoded = codec.decode(msg.encode())
    assert (decoded.task, decoded.args, decoded.kwargs, decoded.queue, decoded.priority) == \
        ("t.add", [1, 2], {"k": [1, "x"]}, "q", 5)
    assert json.loads(msg.encode())["v"] == codec.VERSION
    with pytest.raises(EncodeError, match="cannot be encoded as JSON"):
        codec.build("t.add", ({1},)).encode()
    with pytest.raises(EncodeError, match="must be a list or tuple"):
        codec.build("t.add", "ab")


@pytest.mark.parametrize(("body", "reason"), [
    ("nope", "not valid JSON"),
    ("[]", "not an object"),
    ('{"v": 2}', "unsupported message version 2"),
    ('{"v": 1, "id": "x"}', "missing field(s) task, args, kwargs"),
    ('{"v": 1, "id": "x", "task": "t", "args": {}, "kwargs": {}}', "field 'args'"),
    ('{"v": 1, "id": "x", "task": "t", "args": [], "kwargs": {}, "retries": "3"}',
     "field 'retries'"),
])
def test_decoding_says_exactly_what_is_wrong(body, reason):
    with pytest.raises(MessageDecodeError) as caught:
        codec.decode(body)
    assert reason in str(caught.value)


def test_routing_precedence():
    app = Fleet("p", task_routes={"p.exact": "exact-q", "p.img_*": "images"})

    @app.task(queue="own")
    def owned():
        return None

    assert route(app, "p.exact") == "exact-q"
    assert route(app, "p.img_resize") == "images"
    assert route(app, "p.other") == "default"
    assert route(app, "p.exact", queue="explicit") == "explicit"
    assert route(app, owned.name, task=owned) == "own"
    app.conf.update(task_routes=[lambda name: "fn-q" if name.endswith("x") else None,
                                 {"*": "catch-all"}])
    assert route(app, "p.x") == "fn-q"
    assert route(app, "p.y") == "catch-all"


def test_rate_strings():
    assert parse_rate("10/s") == 10
    assert parse_rate("60/m") == 1
    assert parse_rate("3600/h") == 1
    assert parse_rate(None) == 0
    with pytest.raises(ConfigError, match="invalid rate limit"):
        parse_rate("10/day")
    bucket = TokenBucket(1000.0)
    assert bucket.take() and not bucket.take()
    assert 0 < bucket.wait_time() <= 0.001


def test_load_app_forms(tmp_path, monkeypatch):
    from fleet.engine.app import load_app

    package = tmp_path / "projx"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "tasks.py").write_text("from fleet import Fleet\napp = Fleet('projx')\n"
                                      "other = Fleet('other')\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_app("projx").main == "projx"
    assert load_app("projx.tasks").main == "projx"
    assert load_app("projx.tasks:other").main == "other"
    with pytest.raises(AppLoadError, match="not a Fleet app"):
        load_app("projx.tasks:missing")
    with pytest.raises(AppLoadError, match="no module named 'nothere'"):
        load_app("nothere")


def test_apply_async_refuses_unknown_options():
    app = Fleet("x", broker="memory://refuse")

    @app.task
    def noop():
        return None

    with pytest.raises(TypeError, match="did you mean 'countdown'"):
        noop.apply_async(countdwn=3)
