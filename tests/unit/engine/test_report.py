"""An app's report (fleet report, inspect report): versions, platform, settings, masked."""

from __future__ import annotations

from fleet import Fleet
from fleet.engine.report import build_report, format_report


def test_the_report_names_versions_the_app_and_changed_settings_without_secrets():
    app = Fleet("proj", broker="redis://:secret@db:6379/0", task_default_queue="jobs")
    app.task(name="proj.add")(lambda x, y: x + y)
    data = build_report(app, "proj")
    assert data["app"] == {"spec": "proj", "main": "proj", "tasks": ["proj.add"]}
    assert data["transport"]["broker_kind"] == "redis"
    assert "secret" not in data["transport"]["broker"]
    assert data["settings"]["task_default_queue"] == {"value": "jobs", "from": "app"}
    text = format_report(data)
    assert "secret" not in text and "app      -> proj (1 tasks)" in text
    assert "    task_default_queue = 'jobs'  [app]" in text


def test_a_default_app_says_so():
    text = format_report(build_report(Fleet(), None))
    assert "app      -> (none) (0 tasks)" in text and "settings -> (all defaults)" in text
