"""fleet.worker_setup.options: the worker's options declared once, and a node's recorded
command line read back into WorkerOptions (what multi's forked launcher runs)."""

from __future__ import annotations

import dataclasses

import pytest

from fleet.app_options import APP_OPTIONS, AppOptions
from fleet.cli.worker import worker
from fleet.multi import WORKER_EXPANDED, WORKER_OPTIONS, expand_nodes, parse_multi_args
from fleet.multictl.state import record_for
from fleet.multictl.toml_section import WORKER_KEYS
from fleet.worker_setup.options import (
    CHECK_OPTIONS,
    WorkerOptions,
    multi_options,
    options_from_argv,
)
from fleet.worker_setup.options import (
    WORKER_OPTIONS as TABLE,
)


def test_worker_options_has_a_field_for_every_option_of_the_table_with_its_default():
    fields = {field.name: field for field in dataclasses.fields(WorkerOptions)}
    assert set(fields) - {"app", "overrides"} == {o.dest for o in TABLE} - CHECK_OPTIONS
    for option in TABLE:
        if option.dest in fields:
            default = option.default if option.default is not None else \
                (False if not option.takes_value else None)
            assert fields[option.dest].default == default, option.dest


def test_fleet_worker_is_built_from_the_table_in_its_order():
    own = [param for param in worker.params if param.name not in
           {option.dest for option in APP_OPTIONS} | {"no_color", "quiet", "overrides"}]
    assert [(param.name, param.opts, param.help) for param in own] == \
        [(option.dest, list(option.flags), option.help) for option in TABLE]


def test_multi_passes_on_the_app_options_and_the_worker_options_marked_for_it():
    assert multi_options() == WORKER_OPTIONS
    names = [option.name for option in WORKER_OPTIONS]
    assert names[:4] == ["--app", "--broker", "--result-backend", "--config"]
    assert not {"--hostname", "--detach", "--check", "--json", "--workdir"} & set(names)
    assert {"--pidfile", "--logfile"} == WORKER_EXPANDED


def test_every_option_multi_passes_on_is_a_key_of_multi_in_fleet_toml_with_its_kind():
    from_file = {key.option: key.kind for key in WORKER_KEYS.values()}
    for option in WORKER_OPTIONS:
        if option.name not in ("--app", "--broker", "--result-backend", "--config"):
            assert from_file[option.name] == option.kind


def test_a_recorded_command_line_reads_back_into_typed_options(tmp_path):
    spec = parse_multi_args(["w1", "-A", "proj", "-b", "redis://h/0", "-c", "3", "-Q", "a,b",
                             "-l", "info", "--time-limit=2.5", "-E", "--autoscale=4,1",
                             "--uid=fleet", "--umask=027", "--", "task_acks_late=true",
                             "--not-an-option"], hostname="h")
    record = record_for(expand_nodes(spec, is_root=False)[0], workdir=tmp_path)
    options = options_from_argv(record.argv[3:])
    assert options == WorkerOptions(
        app=AppOptions(app="proj", broker="redis://h/0"), concurrency=3, queues="a,b",
        hostname="w1@h", loglevel="info", logfile=record.logfile, pidfile=record.pidfile,
        time_limit=2.5, send_events=True, autoscale="4,1", detach=True, uid="fleet",
        umask="027", overrides=("task_acks_late=true", "--not-an-option"))


def test_short_and_spaced_spellings_read_like_fleet_worker_reads_them():
    options = options_from_argv(["worker", "-c", "2", "--queues", "x", "-n", "a@b", "-B"])
    assert (options.concurrency, options.queues, options.hostname, options.embed_beat) == \
        (2, "x", "a@b", True)
    assert options_from_argv(["worker"]) == WorkerOptions()


@pytest.mark.parametrize("argv", [
    [],
    ["multi", "start", "3"],
    ["worker", "--concurrency=0"],  # fleet worker refuses it, and says so in its own words
    ["worker", "-c", "many"],
    ["worker", "--time-limit=-1"],
    ["worker", "--no-such-option"],
    ["worker", "--check"],
    ["worker", "-j"],
    ["worker", "-A=proj"],  # click reads the value "=proj": not ours to guess
    ["worker", "--events=yes"],
    ["worker", "-n"],
    ["worker", "task_acks_late=true"],  # an override before `--`
    ["-A", "proj", "worker"],
])
def test_anything_else_is_left_for_fleet_worker_to_run_and_explain(argv):
    assert options_from_argv(argv) is None


def test_the_last_of_a_repeated_option_wins_as_in_fleet_worker():
    assert options_from_argv(["worker", "-c", "2", "--concurrency=5"]).concurrency == 5


def test_the_pools_of_fleet_worker_are_the_engines():
    from fleet.engine.pools import POOLS as ENGINE_POOLS
    from fleet.worker_setup.options import POOLS

    assert POOLS == ENGINE_POOLS == ("prefork", "solo", "threads")
    [pool] = [option for option in TABLE if option.dest == "pool"]
    assert pool.choices == POOLS and pool.flags == ("-P", "--pool")
    assert options_from_argv(["worker", "-P", "threads"]).pool == "threads"
    assert options_from_argv(["worker", "--pool=forked"]) is None  # fleet worker says why
