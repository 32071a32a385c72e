"""The app: settings from objects, the task registry, finding the app given with -A."""

from __future__ import annotations

import types

import pytest

from fleet import Fleet
from fleet.exceptions import NotRegistered
from fleet.operator_errors import AppLoadError, ConfigError


def test_config_from_object_validates_every_setting():
    app = Fleet("x")
    app.config_from_object({"task_default_queue": "jobs"})
    assert app.conf.task_default_queue == "jobs"
    module = types.SimpleNamespace(result_expires=5, broker_urll="redis://")
    with pytest.raises(ConfigError, match="did you mean 'broker_url'"):
        app.config_from_object(module)


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
