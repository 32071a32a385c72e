"""Which limits each pool applies: what solo and threads refuse, with the exit code and the
words an operator needs (the flag or the setting, where it was set, the pool to use)."""

from __future__ import annotations

import pytest

from fleet import Fleet
from fleet.engine.pools import POOLS, check_limits, check_pool, in_process
from fleet.engine.worker import NodeOptions
from fleet.operator_errors import EXIT_CONFIG, EXIT_USAGE, ConfigError, UsageError


def options(**values) -> NodeOptions:
    return NodeOptions("w1@h", ["default"], **{"concurrency": 1, **values})


ALL_LIMITS = {"time_limit": 5.0, "soft_time_limit": 4.0, "max_tasks_per_child": 10,
              "max_memory_per_child": 1000, "autoscale": (4, 1), "concurrency": 4}


def test_prefork_applies_every_limit():
    app = Fleet(task_time_limit=30, worker_max_tasks_per_child=3)
    check_limits("prefork", options(**ALL_LIMITS), app.conf, list(ALL_LIMITS))


def test_threads_run_several_tasks_and_autoscale_but_refuse_what_needs_a_child():
    app = Fleet()
    check_limits("threads", options(concurrency=8, autoscale=(8, 2)), app.conf,
                 ["concurrency", "autoscale"])
    for field in ("time_limit", "soft_time_limit", "max_tasks_per_child",
                  "max_memory_per_child"):
        with pytest.raises(UsageError) as refused:
            check_limits("threads", options(**{field: ALL_LIMITS[field]}), app.conf, [field])
        assert refused.value.exit_code == EXIT_USAGE
        assert "cannot apply to the threads pool" in refused.value.one_line()
        assert "--pool prefork" in refused.value.one_line()


@pytest.mark.parametrize(("field", "says"), [
    ("time_limit", "--time-limit 5 cannot apply to the solo pool: a hard time limit kills "
                   "the task's process"),
    ("soft_time_limit", "--soft-time-limit 4 cannot apply to the solo pool"),
    ("max_tasks_per_child", "there is no child process to replace in the solo pool"),
    ("concurrency", "--concurrency 4 cannot apply to the solo pool: the solo pool runs one "
                    "task at a time; use --pool threads or prefork"),
    ("autoscale", "--autoscale 4,1 cannot apply to the solo pool"),
])
def test_solo_refuses_a_flag_naming_it(field, says):
    with pytest.raises(UsageError) as refused:
        check_limits("solo", options(**{field: ALL_LIMITS[field]}), Fleet().conf, [field])
    assert says in refused.value.one_line()
    assert f"or drop --{field.replace('_', '-')}" in refused.value.one_line()


def test_a_setting_is_refused_naming_it_and_where_it_was_set(monkeypatch):
    monkeypatch.setenv("FLEET_TASK_TIME_LIMIT", "30")
    app = Fleet()
    with pytest.raises(ConfigError) as refused:
        check_limits("threads", options(), app.conf, [])
    line = refused.value.one_line()
    assert refused.value.exit_code == EXIT_CONFIG
    assert line.startswith("task_time_limit = 30.0 (from FLEET_TASK_TIME_LIMIT) cannot apply "
                           "to the threads pool")
    assert line.endswith("or override it for this node: -- task_time_limit=null")
    monkeypatch.delenv("FLEET_TASK_TIME_LIMIT")
    in_file = Fleet()
    in_file.conf.update({"worker_concurrency": 3}, layer="file")
    with pytest.raises(ConfigError, match=r"worker_concurrency = 3 \(in fleet.toml\)"):
        check_limits("solo", options(), in_file.conf, [])
    check_limits("solo", options(), Fleet(worker_concurrency=1).conf, [])  # one is fine


def test_a_node_refuses_at_construction_what_its_pool_cannot_apply():
    from fleet.engine.worker import Node

    with pytest.raises(UsageError, match="--max-tasks-per-child 2 cannot apply"):
        Node(Fleet(), options(pool="threads", max_tasks_per_child=2))
    with pytest.raises(UsageError, match="'forked' is not a pool"):
        Node(Fleet(), options(pool="forked"))


def test_the_pools_and_which_run_in_the_main_process():
    assert POOLS == ("prefork", "solo", "threads")
    assert [pool for pool in POOLS if in_process(pool)] == ["solo", "threads"]
    assert check_pool("solo") == "solo"
    with pytest.raises(UsageError, match="use one of prefork, solo, threads"):
        check_pool("gevent")


def test_the_setting_takes_only_a_pool():
    with pytest.raises(ConfigError, match="expected one of prefork, solo, threads"):
        Fleet(worker_pool="eventlet")
    assert Fleet(worker_pool="threads").conf.worker_pool == "threads"
