"""fleet.worker_setup.run: from WorkerOptions to the engine's NodeOptions, and how a failure
ends a node run outside the CLI (multi's forked launcher), without starting a node."""

from __future__ import annotations

import logging

import pytest

from fleet import Fleet
from fleet.app_options import AppOptions
from fleet.operator_errors import EXIT_APP_LOAD, EXIT_BROKER, EXIT_SOFTWARE, EXIT_USAGE
from fleet.worker_setup import run
from fleet.worker_setup.options import WorkerOptions


def test_node_options_take_the_given_options_first():
    options = WorkerOptions(concurrency=3, queues="a, b", logfile="/l/%n%I.log",
                            pidfile="~/%n.pid", prefetch_multiplier=2, max_tasks_per_child=9,
                            max_memory_per_child=1000, time_limit=5.0, soft_time_limit=4.0,
                            send_events=True, autoscale="4,2")
    made = run.build_node_options(options, Fleet(worker_concurrency=8), "w1@h", logging.INFO)
    assert (made.nodename, made.queues, made.concurrency, made.loglevel) == \
        ("w1@h", ["a", "b"], 3, logging.INFO)
    assert made.logfile == "/l/w1%I.log"  # %I is for each process to expand
    assert made.pidfile.endswith("/w1.pid") and not made.pidfile.startswith("~")
    assert (made.prefetch_multiplier, made.max_tasks_per_child, made.max_memory_per_child) == \
        (2, 9, 1000)
    assert (made.time_limit, made.soft_time_limit, made.send_events, made.autoscale) == \
        (5.0, 4.0, True, (4, 2))


def test_node_options_fall_back_to_the_apps_settings():
    app = Fleet(task_default_queue="jobs", worker_concurrency=5, worker_prefetch_multiplier=7,
                worker_send_task_events=True, worker_autoscale="6,1")
    made = run.build_node_options(WorkerOptions(), app, "w1@h", logging.WARNING)
    assert (made.queues, made.concurrency, made.prefetch_multiplier) == (["jobs"], 5, 7)
    assert made.send_events and made.autoscale == (6, 1)
    assert made.logfile is None and made.pidfile is None


def test_the_pool_comes_from_the_flag_else_the_setting_and_solo_runs_one_task():
    made = run.build_node_options(WorkerOptions(pool="solo"), Fleet(), "w1@h", logging.INFO)
    assert (made.pool, made.concurrency) == ("solo", 1)  # not the CPU count
    threads = Fleet(worker_pool="threads", worker_concurrency=20)
    made = run.build_node_options(WorkerOptions(), threads, "w1@h", logging.INFO)
    assert (made.pool, made.concurrency) == ("threads", 20)
    assert run.build_node_options(WorkerOptions(pool="prefork"), threads, "w1@h",
                                  logging.INFO).pool == "prefork"


def test_what_the_pool_cannot_apply_is_refused_as_a_flag_or_as_a_setting():
    from fleet.operator_errors import EXIT_CONFIG, FleetError

    with pytest.raises(FleetError) as flag:
        run.build_node_options(WorkerOptions(pool="threads", time_limit=5.0), Fleet(), "w1@h",
                               logging.INFO)
    assert flag.value.exit_code == EXIT_USAGE and "--time-limit 5" in flag.value.message
    with pytest.raises(FleetError) as setting:
        run.build_node_options(WorkerOptions(pool="solo"), Fleet(worker_autoscale="4,1"),
                               "w1@h", logging.INFO)
    assert setting.value.exit_code == EXIT_CONFIG
    assert "worker_autoscale = '4,1' (in the app's settings)" in setting.value.message


@pytest.fixture
def no_config_here(tmp_path, monkeypatch):
    """No fleet.toml in the working directory, and no FLEET_* variable."""
    monkeypatch.chdir(tmp_path)
    for name in ("FLEET_APP", "FLEET_CONFIG", "FLEET_DEBUG"):
        monkeypatch.delenv(name, raising=False)


def test_a_failure_ends_the_run_as_it_ends_fleet_worker(no_config_here, capsys):
    bad_level = WorkerOptions(loglevel="loud")
    assert run.run_worker_reporting(bad_level) == EXIT_USAGE
    assert capsys.readouterr().err.startswith("fleet: unknown log level 'loud'; use one of")
    no_app = WorkerOptions(app=AppOptions(app="no_such_app_here"))
    assert run.run_worker_reporting(no_app) == EXIT_APP_LOAD
    err = capsys.readouterr().err
    assert err.startswith("fleet: ") and "no_such_app_here" in err and err.count("\n") == 1


def test_an_unexpected_error_is_a_bug_report_line_or_a_broker_error(no_config_here, capsys,
                                                                     monkeypatch):
    def broken(options):
        raise RuntimeError("oops\n  twice")

    monkeypatch.setattr(run, "run_worker", broken)
    assert run.run_worker_reporting(WorkerOptions()) == EXIT_SOFTWARE
    assert capsys.readouterr().err == (
        "fleet: internal error: RuntimeError: oops twice; this is a bug in fleet: run again "
        "with FLEET_DEBUG=1 for the traceback and report it\n")

    def unreachable(options):
        raise ConnectionRefusedError("refused")

    monkeypatch.setattr(run, "run_worker", unreachable)
    assert run.run_worker_reporting(WorkerOptions()) == EXIT_BROKER
    assert "broker error: ConnectionRefusedError: refused" in capsys.readouterr().err


def test_with_fleet_debug_an_unexpected_error_prints_its_traceback(no_config_here, capsys,
                                                                   monkeypatch):
    def broken(options):
        raise RuntimeError("oops")

    monkeypatch.setattr(run, "run_worker", broken)
    monkeypatch.setenv("FLEET_DEBUG", "1")
    assert run.run_worker_reporting(WorkerOptions()) == EXIT_SOFTWARE
    assert "Traceback" in capsys.readouterr().err
