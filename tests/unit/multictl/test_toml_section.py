"""fleet.toml's [multi] section: translated into a multi command line, expanded like one."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleet.config_file import check_config, parse_config
from fleet.multi import expand_nodes, parse_multi_args
from fleet.multictl.toml_section import multi_argv
from fleet.operator_errors import ConfigError


def nodes_of(multi: dict, path: Path | None = None) -> dict:
    config = parse_config({"app": "proj", "multi": multi}, path)
    spec = parse_multi_args(multi_argv(config), hostname="box")
    return {node.name: node for node in expand_nodes(spec, is_root=False)}


def test_count_under_multi_gives_w_nodes_with_shared_options():
    nodes = nodes_of({"nodes": 3, "concurrency": 2, "queues": ["a", "b"], "events": True})
    assert list(nodes) == ["w1@box", "w2@box", "w3@box"]
    for node in nodes.values():
        assert node.options["--concurrency"] == "2"
        assert node.options["--queues"] == "a,b"
        assert node.options["--events"] is True


def test_range_prefix_renames_counted_nodes():
    assert list(nodes_of({"nodes": 2, "range_prefix": "img"})) == ["img1@box", "img2@box"]


def test_groups_get_their_own_options_over_the_shared_ones():
    nodes = nodes_of({
        "concurrency": 2, "loglevel": "info", "queues": "default",
        "groups": {
            "images": {"nodes": 2, "queues": ["images", "video"], "concurrency": 4},
            "data": {"nodes": ["data"], "queues": "data", "loglevel": "debug"},
        },
    })
    assert list(nodes) == ["images1@box", "images2@box", "data@box"]
    assert nodes["images1@box"].options["--queues"] == "images,video"
    assert nodes["images2@box"].options["--concurrency"] == "4"
    assert nodes["images2@box"].options["--loglevel"] == "info"
    assert nodes["data@box"].options["--queues"] == "data"
    assert nodes["data@box"].options["--loglevel"] == "debug"
    assert nodes["data@box"].options["--concurrency"] == "2"


def test_count_and_groups_together():
    nodes = nodes_of({"nodes": 2, "groups": {"img": {"nodes": 1, "queues": "images"}}})
    assert list(nodes) == ["w1@box", "w2@box", "img1@box"]
    assert "--queues" not in nodes["w1@box"].options
    assert nodes["img1@box"].options["--queues"] == "images"


def test_files_user_and_config_path_reach_every_node(tmp_path):
    path = tmp_path / "fleet.toml"
    nodes = nodes_of({"nodes": 1, "pidfile": str(tmp_path / "%n.pid"),
                      "logfile": str(tmp_path / "%n%I.log"), "user": "fleet",
                      "group": "fleet", "autoscale": [4, 1]}, path)
    node = nodes["w1@box"]
    assert node.pidfile == tmp_path / "w1.pid"
    assert node.logfile == str(tmp_path / "w1%I.log")
    assert node.options["--uid"] == "fleet"
    assert node.options["--gid"] == "fleet"
    assert node.options["--autoscale"] == "4,1"
    assert node.options["--config"] == str(path.resolve())


def test_a_group_can_run_the_threads_pool():
    nodes = nodes_of({"nodes": 1, "groups": {"io": {"nodes": 1, "pool": "threads",
                                                    "concurrency": 20}}})
    assert "--pool" not in nodes["w1@box"].options
    assert nodes["io1@box"].options["--pool"] == "threads"
    assert nodes["io1@box"].options["--concurrency"] == "20"


def test_hostname_sets_the_host_part():
    config = parse_config({"multi": {"nodes": 1, "hostname": "example.org"}})
    assert expand_nodes(parse_multi_args(multi_argv(config)), is_root=False)[0].name == \
        "w1@example.org"


@pytest.mark.parametrize(("multi", "expected"), [
    ({"nodes": 2, "concurency": 2}, "did you mean 'concurrency'?"),
    ({"nodes": 0}, "at least one node"),
    ({"nodes": True}, "expected a node count or a list of names"),
    ({"nodes": []}, "non-empty list of node names"),
    ({"nodes": 1, "concurrency": "two"}, "multi.concurrency = 'two': expected a whole number"),
    ({"nodes": 1, "events": "yes"}, "expected true or false"),
    ({"nodes": 1, "time_limit": -1}, "a number of seconds > 0"),
    ({"nodes": 1, "pool": "forked"}, "multi.pool = 'forked': expected one of prefork, solo"),
    ({"concurrency": 2}, "[multi] names no nodes"),
    ({"groups": {"img": {"queues": "a"}}}, "multi.groups.img has no nodes"),
    ({"groups": {"img": {"nodes": 1, "hostname": "x"}}}, "applies to the whole fleet"),
    ({"groups": {"img": {"nodes": 1, "queus": "a"}}}, "did you mean 'queues'?"),
    ({"groups": {"img": 3}}, "must be a table"),
])
def test_every_problem_names_the_key_and_what_was_expected(multi, expected):
    _config, problems = check_config({"multi": multi}, Path("/etc/fleet.toml"))
    assert problems, multi
    text = " ".join(problem.one_line() for problem in problems)
    assert expected in text
    assert "/etc/fleet.toml" in text


def test_no_multi_section_is_a_clear_error():
    with pytest.raises(ConfigError, match=r"no \[multi\] section"):
        multi_argv(parse_config({"app": "proj"}))


def test_the_repository_example_is_valid():
    from fleet.config_file import load_config

    config = load_config(Path(__file__).resolve().parents[3] / "fleet.toml")
    assert parse_multi_args(multi_argv(config)).positionals
