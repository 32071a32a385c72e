"""fleet.upgrade: rewriting a Celery settings module for fleet (the command: tests/unit/cli)."""

from __future__ import annotations

import runpy
import types
import warnings

import pytest

from fleet import Fleet
from fleet.operator_errors import ConfigError
from fleet.upgrade import upgrade_file, upgrade_source

CELERYCONFIG = '''"""Celery settings."""
import os

BROKER_URL = os.environ.get("BROKER", "redis://127.0.0.1:6390/0")  # the broker
CELERY_RESULT_BACKEND = BROKER_URL
CELERY_TIMEZONE = "Europe/Paris"
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = [
    "json",
]
CELERYBEAT_SCHEDULE = {"tick": {"task": "proj.tick", "schedule": 30.0}}
if os.environ.get("DEV"):
    CELERY_ALWAYS_EAGER = True
CELERYD_CONCURRENCY = 4
REDIS_HOST = "not a setting"
'''


def test_old_names_are_renamed_everywhere_and_the_rest_commented_out_with_why():
    rewrite = upgrade_source(CELERYCONFIG)
    assert rewrite.renamed == {"BROKER_URL": "broker_url", "CELERY_RESULT_BACKEND":
                               "result_backend", "CELERY_TIMEZONE": "timezone",
                               "CELERYBEAT_SCHEDULE": "beat_schedule",
                               "CELERYD_CONCURRENCY": "worker_concurrency"}
    assert [found.given for found in rewrite.removed] == [
        "CELERY_TASK_SERIALIZER", "CELERY_ACCEPT_CONTENT", "CELERY_ALWAYS_EAGER"]
    text = rewrite.text
    assert "result_backend = broker_url\n" in text  # a use of a renamed name follows it
    assert "# fleet: CELERY_ACCEPT_CONTENT has no equivalent (fleet messages and results " \
           "are always JSON)\n# CELERY_ACCEPT_CONTENT = [\n#     \"json\",\n# ]\n" in text
    assert "    pass\n    # CELERY_ALWAYS_EAGER = True\n" in text  # the if stays valid
    assert 'REDIS_HOST = "not a setting"' in text and '"""Celery settings."""' in text
    assert rewrite.diff().startswith("--- <settings>\n+++ <settings> (for fleet)\n")


def test_the_rewritten_module_loads_without_a_warning(tmp_path):
    (tmp_path / "upgraded.py").write_text(upgrade_source(CELERYCONFIG).text)
    values = runpy.run_path(str(tmp_path / "upgraded.py"))
    app = Fleet("p")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        app.config_from_object(types.SimpleNamespace(**values))  # like the module
    assert app.conf.worker_concurrency == 4 and app.conf.timezone == "Europe/Paris"


def test_django_settings_get_fleet_prefixed_names():
    source = 'DEBUG = True\nCELERY_BROKER_URL = "redis://x"\nBROKER_URL = CELERY_BROKER_URL\n' \
             'CELERY_TASK_ALWAYS_EAGER = False\ntimezone_helper = 1\n'
    rewrite = upgrade_source(source, django=True)
    assert rewrite.renamed == {"CELERY_BROKER_URL": "FLEET_BROKER_URL",
                               "BROKER_URL": "FLEET_BROKER_URL"}
    assert 'FLEET_BROKER_URL = "redis://x"\nFLEET_BROKER_URL = FLEET_BROKER_URL\n' in rewrite.text
    assert "# CELERY_TASK_ALWAYS_EAGER = False" in rewrite.text
    assert "DEBUG = True" in rewrite.text


def test_a_module_that_is_not_python_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "bad.py"
    path.write_text("BROKER_URL = (\n")
    with pytest.raises(ConfigError, match="not valid Python"):
        upgrade_file(path)
