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


def test_load_app_looks_in_the_package_then_its_fleet_app_and_tasks_modules(tmp_path,
                                                                             monkeypatch):
    """Issue 17: the order is proj, proj.fleet (the conventional place, like Celery's
    proj/celery.py), proj.app, proj.tasks; it was app, tasks, fleet."""
    from fleet.engine.app import APP_MODULES, load_app

    assert APP_MODULES == ("fleet", "app", "tasks")
    for name, modules in {"order_a": ("fleet", "app", "tasks"), "order_b": ("app", "tasks"),
                          "order_c": ("tasks",)}.items():
        package = tmp_path / name
        package.mkdir()
        (package / "__init__.py").write_text("")
        for module in modules:
            (package / f"{module}.py").write_text(
                f"from fleet import Fleet\napp = Fleet('{name}.{module}')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert load_app("order_a").main == "order_a.fleet"
    assert load_app("order_b").main == "order_b.app"
    assert load_app("order_c").main == "order_c.tasks"
    (tmp_path / "order_d").mkdir()
    (tmp_path / "order_d" / "__init__.py").write_text("")
    with pytest.raises(AppLoadError, match=r"order_d\.fleet, \.app or \.tasks"):
        load_app("order_d")


def test_autodiscover_imports_each_packages_tasks_module_when_includes_are_imported(
        tmp_path, monkeypatch):
    from fleet.engine import current

    monkeypatch.setattr(current, "_shared", [])  # its shared task must not outlive the test
    for name, source in {"disc_a": "from fleet import shared_task\n\n@shared_task\n"
                                   "def ping():\n    return 'pong'\n",
                         "disc_b": None}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
        if source:
            (tmp_path / name / "tasks.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    app = Fleet("disc")
    app.autodiscover_tasks(["disc_a", "disc_b"])  # disc_b has no tasks module: skipped
    assert "disc_a.tasks.ping" not in app.tasks  # lazily: not yet
    app.import_includes()
    assert "disc_a.tasks.ping" in app.tasks
    app.autodiscover_tasks(lambda: ["no_such_package_x"])
    with pytest.raises(AppLoadError, match=r"no_such_package_x\.tasks"):
        app.import_includes()
    with pytest.raises(ConfigError, match="no installed apps"):
        Fleet("bare").autodiscover_tasks(force=True)
