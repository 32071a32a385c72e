"""`fleet config show/check` and fleet.toml precedence, through the real command line."""

from __future__ import annotations

import json

from tests.support import run_fleet

GOOD = """
app = "testapp"
[settings]
result_expires = 120
task_default_queue = "from-file"
"""


def settings_of(done) -> dict[str, dict]:
    assert done.returncode == 0, done.stderr
    return {row["setting"]: row for row in json.loads(done.stdout)["settings"]}


def test_precedence_defaults_file_env_flags(env, tmp_path):
    config = tmp_path / "fleet.toml"
    config.write_text(GOOD)
    shown = settings_of(run_fleet("config", "show", "--json", "--config", str(config), env=env))
    assert shown["result_expires"]["value"] == 120.0
    assert shown["result_expires"]["source"] == f"file {config}"
    assert shown["worker_prefetch_multiplier"]["source"] == "default"
    with_env = {**env, "FLEET_RESULT_EXPIRES": "60"}
    shown = settings_of(run_fleet("config", "show", "--json", "--config", str(config),
                                  env=with_env))
    assert (shown["result_expires"]["value"], shown["result_expires"]["source"]) == \
        (60.0, "env FLEET_RESULT_EXPIRES")
    shown = settings_of(run_fleet("config", "show", "--json", "--config", str(config),
                                  "-b", "sqlite:////tmp/x.db", env=with_env))
    assert shown["broker_url"]["source"] == "command line"


def test_fleet_toml_in_the_current_directory_is_found(env, tmp_path):
    (tmp_path / "fleet.toml").write_text(GOOD)
    done = run_fleet("config", "show", "--json", env=env, cwd=tmp_path)
    assert json.loads(done.stdout)["config_file"] == "fleet.toml"
    assert settings_of(done)["task_default_queue"]["value"] == "from-file"


def test_check_reports_every_problem_on_its_own_line(env, tmp_path):
    config = tmp_path / "fleet.toml"
    config.write_text('ap = "x"\n[settings]\nresult_expire = 3\nworker_concurrency = "many"\n')
    done = run_fleet("config", "check", "--config", str(config), env=env)
    assert done.returncode == 78
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 3
    assert "did you mean 'app'" in lines[0]
    assert "did you mean 'settings.result_expires'" in lines[1]
    assert "worker_concurrency = 'many'" in lines[2] and "whole number" in lines[2]


def test_check_passes_a_good_file_and_imports_the_app(env, tmp_path):
    config = tmp_path / "fleet.toml"
    config.write_text(GOOD)
    done = run_fleet("config", "check", "--config", str(config), env=env)
    assert done.returncode == 0, done.stderr
    assert "app testapp" in done.stdout
    config.write_text('app = "no_such_app_module"\n')
    done = run_fleet("config", "check", "--config", str(config), env=env)
    assert done.returncode == 78
    assert "cannot import app 'no_such_app_module'" in done.stderr


def test_the_repository_example_is_valid(env):
    from tests.support import ROOT

    done = run_fleet("config", "check", "--config", str(ROOT / "fleet.toml"), env=env,
                     cwd=ROOT)
    assert done.returncode == 0, done.stderr


def test_a_missing_explicit_config_file_is_an_error(env, tmp_path):
    done = run_fleet("queues", "--config", str(tmp_path / "nope.toml"), env=env)
    assert done.returncode == 78
    assert "does not exist" in done.stderr
