"""`fleet multi` node specs: from a command line to nodes, without starting anything."""

from __future__ import annotations

import shlex
from pathlib import Path
from signal import Signals

import pytest

from fleet import multi
from fleet.multi import (
    MULTI_OPTIONS,
    WORKER_OPTIONS,
    MultiSpec,
    NodeSpec,
    describe_nodes,
    expand_nodes,
    expand_template,
    node_names,
    parse_multi_args,
    select_nodes,
)
from fleet.operator_errors import EXIT_USAGE, UsageError

HOST = "host.example.com"


def parse(cmdline: str) -> MultiSpec:
    return parse_multi_args(shlex.split(cmdline), hostname=HOST)


def nodes_for(cmdline: str, *, is_root: bool = True) -> list[NodeSpec]:
    return expand_nodes(parse(cmdline), is_root=is_root)


def names_for(cmdline: str) -> list[str]:
    return node_names(nodes_for(cmdline))


def option_of(cmdline: str, option: str) -> list[str | bool | None]:
    return [node.options.get(option) for node in nodes_for(cmdline)]


def usage_error(cmdline: str) -> UsageError:
    with pytest.raises(UsageError) as caught:
        nodes_for(cmdline)
    assert caught.value.exit_code == EXIT_USAGE
    return caught.value


# -- node names ------------------------------------------------------------------------------


def test_a_single_integer_makes_that_many_numbered_nodes_on_this_host():
    assert names_for("3") == ["w1@host.example.com", "w2@host.example.com", "w3@host.example.com"]


def test_range_prefix_renames_the_numbered_nodes():
    assert names_for("2 --range-prefix=worker") == [f"worker1@{HOST}", f"worker2@{HOST}"]
    assert names_for("2 --range-prefix node") == [f"node1@{HOST}", f"node2@{HOST}"]


def test_positional_names_make_one_node_each_in_order():
    assert names_for("web img") == [f"web@{HOST}", f"img@{HOST}"]


def test_a_single_non_integer_name_is_the_names_form():
    assert names_for("leslie") == [f"leslie@{HOST}"]


@pytest.mark.parametrize("cmdline", ["10 20", "1-3", "web 2", "7@other.host", "1 --range-prefix="])
def test_a_node_named_like_a_position_or_a_range_is_refused(cmdline):
    # Issue 17: after start, `2` and `1-3` select remembered nodes by position, so a node
    # called `2` or `1-3` could never be named again: refused at start, saying why.
    with pytest.raises(UsageError, match="selects nodes by position"):
        names_for(cmdline)


def test_a_full_name_keeps_its_own_host():
    assert names_for("a@other.example.org b") == ["a@other.example.org", f"b@{HOST}"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [("a@%h", f"a@{HOST}"), ("a@%n", "a@host"), ("a@%d", "a@example.com")],
)
def test_the_host_part_of_a_full_name_is_percent_expanded(given, expected):
    assert names_for(given) == [expected]


def test_prefix_applies_to_short_names_but_not_to_full_names():
    assert names_for("web img@%h --prefix=pre-") == [f"pre-web@{HOST}", f"img@{HOST}"]


def test_prefix_with_a_count_is_an_error_that_points_to_range_prefix():
    error = usage_error("3 --prefix=pre-")
    assert error.message == "--prefix applies to node names, not to a node count"
    assert error.hint == "use --range-prefix=pre- for nodes pre-1..pre-3"


def test_range_prefix_with_names_is_an_error_that_points_to_prefix():
    error = usage_error("web img --range-prefix=x")
    assert error.message == "--range-prefix applies to a node count, not to node names"
    assert error.hint == "use --prefix=x to prefix the names"


@pytest.mark.parametrize("host_option", ["-n box2", "--hostname box2", "--hostname=box2"])
def test_hostname_option_sets_the_host_part_of_generated_names(host_option):
    assert names_for(f"2 {host_option}") == ["w1@box2", "w2@box2"]
    assert names_for(f"web a@%h {host_option}") == ["web@box2", "a@box2"]


def test_the_host_defaults_to_this_machine(monkeypatch):
    monkeypatch.setattr(multi, "gethostname", lambda: "vm.lan")
    spec = parse_multi_args(["2"])
    assert spec.hostname == "vm.lan"
    assert node_names(expand_nodes(spec, is_root=True)) == ["w1@vm.lan", "w2@vm.lan"]


def test_an_injected_hostname_is_used_and_multi_n_still_wins():
    assert parse_multi_args(["1"], hostname="injected").hostname == "injected"
    assert parse_multi_args(["1", "-n", "given"], hostname="injected").hostname == "given"


def test_no_nodes_is_an_error_that_shows_both_forms():
    error = usage_error("-c 3")
    assert error.message == "no nodes given"
    assert "fleet multi start 3" in error.hint
    assert "fleet multi start web img" in error.hint


def test_a_count_of_zero_is_an_error():
    assert usage_error("0").message == "node count 0: at least one node is needed"


@pytest.mark.parametrize(
    ("cmdline", "twice"),
    [("web web", "web"), (f"web web@{HOST}", "web"), ("a@x a@x", "a@x"), ("w1 a@%h w1", "w1")],
)
def test_a_node_given_twice_is_an_error(cmdline, twice):
    full = twice if "@" in twice else f"{twice}@{HOST}"
    assert usage_error(cmdline).message == f"node {full} is given twice"


@pytest.mark.parametrize(
    ("given", "name"),
    [
        ("a@", "a@"),
        ("w/1", f"w/1@{HOST}"),
        ("a@b@c", "a@b@c"),
        ("'w 1'", f"w 1@{HOST}"),
        ("a,b", f"a,b@{HOST}"),
        ("a@%h%%", f"a@{HOST}%"),
        ("web --prefix=x/", f"x/web@{HOST}"),
    ],
)
def test_an_invalid_node_name_is_an_error(given, name):
    error = usage_error(given)
    assert error.message == f"invalid node name {name!r}"
    assert error.hint.startswith("a node name is NAME@HOST")


@pytest.mark.parametrize("given", ["-n ''", "--hostname="])
def test_an_empty_host_is_an_error(given):
    assert usage_error(f"2 {given}").message.endswith("needs a non-empty value")


# -- the documented examples -----------------------------------------------------------------


def test_queues_and_log_levels_per_range_and_list_with_a_global_default():
    cmdline = "10 -A proj -l info -Q:1-3 images,video -Q:4,5 data -Q default -L:4,5 debug"
    nodes = nodes_for(cmdline)
    assert [node.options["--queues"] for node in nodes] == (
        ["images,video"] * 3 + ["data"] * 2 + ["default"] * 5
    )
    assert [node.options["--loglevel"] for node in nodes] == (
        ["info"] * 3 + ["debug"] * 2 + ["info"] * 5
    )
    assert {node.options["--app"] for node in nodes} == {"proj"}
    assert [node.index for node in nodes] == list(range(1, 11))


def test_per_node_concurrency_overrides_the_global_one_in_count_form():
    assert option_of("3 -c 3 -c:1 10", "--concurrency") == ["10", "3", "3"]


def test_per_node_concurrency_by_short_name():
    assert option_of("image video data -c 3 -c:image 10", "--concurrency") == ["10", "3", "3"]


def test_per_node_concurrency_by_a_list_of_names():
    cmdline = "foo bar baz xuzzy -c 3 -c:foo,bar,baz 10"
    assert option_of(cmdline, "--concurrency") == ["10", "10", "10", "3"]


def test_ranges_work_in_the_names_form():
    # celery multi silently ignored `-c:1-2 7` when nodes were given by name.
    assert option_of("a b c -c:1-2 7", "--concurrency") == ["7", "7", None]


def test_lists_of_positions_work_in_the_names_form():
    assert option_of("a b c -c:1,3 7", "--concurrency") == ["7", None, "7"]


# -- per-node options ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "cmdline",
    [
        "3 --concurrency=3 -c:2 10",
        "3 -c 3 --concurrency:2=10",
        "3 -c 3 --concurrency:2 10",
        "3 --concurrency 3 -c:w2 10",
        f"3 -c 3 -c:w2@{HOST} 10",
    ],
)
def test_a_per_node_value_overrides_the_global_one_whatever_the_spelling(cmdline):
    assert option_of(cmdline, "--concurrency") == ["3", "10", "3"]


def test_the_uppercase_L_is_the_loglevel_option():
    assert option_of("2 -l info -L:2 debug", "--loglevel") == ["info", "debug"]
    assert option_of("2 --loglevel=info -l:2 debug", "--loglevel") == ["info", "debug"]


def test_a_mixed_selector_of_range_and_position():
    assert option_of("8 -c:1-3,7 5", "--concurrency") == ["5"] * 3 + [None] * 3 + ["5", None]


def test_a_full_name_selector_picks_that_node_only():
    cmdline = "img@a img@b -c:img@b 4 --pidfile=/p/%p.pid"
    assert option_of(cmdline, "--concurrency") == [None, "4"]


def test_a_short_name_selector_picks_every_node_with_that_short_name():
    assert option_of("img@a img@b web -c:img 4 --pidfile=%p.pid", "--concurrency") == [
        "4",
        "4",
        None,
    ]


def test_a_later_per_node_option_wins_where_selectors_overlap():
    assert option_of("3 -c:1-2 5 -c:2-3 6", "--concurrency") == ["5", "6", "6"]


def test_a_global_option_given_twice_keeps_the_last_value_whatever_the_spelling():
    assert option_of("1 -c 3 --concurrency=4", "--concurrency") == ["4"]


def test_the_position_of_a_per_node_option_before_the_global_one_does_not_matter():
    assert option_of("2 -c:1 10 -c 3", "--concurrency") == ["10", "3"]


def test_a_per_node_flag_does_not_consume_the_next_token():
    nodes = nodes_for("-E:2 3 -B:w1")
    assert [node.options.get("--events") for node in nodes] == [None, True, None]
    assert [node.options.get("--beat") for node in nodes] == [True, None, None]


def test_a_per_node_option_value_may_contain_commas():
    assert option_of("3 -Q:1-3 images,video", "--queues") == ["images,video"] * 3


# -- bad selectors ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("selector", "reason"),
    [
        ("0", "there is no node 0: positions start at 1"),
        ("11", "there is no node 11: there are 10 nodes"),
        ("4,11", "there is no node 11: there are 10 nodes"),
        ("9-12", "there is no node 12: there are 10 nodes"),
        ("3-1", "the range 3-1 is reversed (write 1-3)"),
        ("1-", "no node is named '1-'"),
        ("foo", "no node is named 'foo'"),
        ("w1@elsewhere", "no node is named 'w1@elsewhere'"),
        ("1,,2", "it has an empty entry"),
        ("1,", "it has an empty entry"),
    ],
)
def test_a_selector_matching_no_node_is_an_error_naming_it_and_the_option(selector, reason):
    error = usage_error(f"10 -Q:{selector} data")
    assert error.message == f"node selector {selector!r} in -Q:{selector} matches no node: {reason}"
    assert error.hint == "valid: 1-10 or w1..w10"


def test_a_bad_selector_in_the_names_form_lists_the_names():
    error = usage_error("web img data --concurrency:video=3")
    assert error.message == (
        "node selector 'video' in --concurrency:video matches no node: no node is named 'video'"
    )
    assert error.hint == "valid: 1-3 or web, img, data"


def test_a_bad_selector_on_a_flag_is_an_error_too():
    error = usage_error("2 -E:3")
    assert (
        error.message
        == "node selector '3' in -E:3 matches no node: there is no node 3: there are 2 nodes"
    )


def test_an_empty_selector_is_an_error():
    error = usage_error("2 -c: 3")
    assert error.message == "-c:: empty node selector"


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ([], "no nodes are known"),
        (["w1@h"], "1 or w1"),
        (["w1@h", "w2@h"], "1-2 or w1, w2"),
        ([f"w{i}@h" for i in range(1, 11)], "1-10 or w1..w10"),
        (["a@h", "b@h", "c@h"], "1-3 or a, b, c"),
        (["a@x", "a@y"], "1-2 or a@x, a@y"),
        (
            [f"n{i}x@h" for i in range(12)],
            "1-12 or " + ", ".join(f"n{i}x" for i in range(10)) + ", ... (12 nodes)",
        ),
    ],
)
def test_describe_nodes_says_which_selectors_are_valid(names, expected):
    assert describe_nodes(names) == expected


# -- option parsing --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spelling", "canonical", "takes_value"),
    [
        (spelling, option.name, option.takes_value)
        for option in WORKER_OPTIONS
        for spelling in (option.name, *option.aliases)
    ],
)
def test_every_worker_option_spelling_is_canonicalised_to_its_long_name(
    spelling, canonical, takes_value
):
    cmdline = f"1 {spelling} v" if takes_value else f"1 {spelling}"
    assert nodes_for(cmdline)[0].options[canonical] == ("v" if takes_value else True)


def test_the_worker_option_table_matches_the_brief():
    assert {option.name: (option.aliases, option.takes_value) for option in WORKER_OPTIONS} == {
        "--app": (("-A",), True),
        "--broker": (("-b",), True),
        "--result-backend": ((), True),
        "--config": ((), True),
        "--concurrency": (("-c",), True),
        "--pool": (("-P",), True),
        "--queues": (("-Q",), True),
        "--loglevel": (("-l", "-L"), True),
        "--logfile": (("-f",), True),
        "--pidfile": ((), True),
        "--prefetch-multiplier": ((), True),
        "--max-tasks-per-child": ((), True),
        "--max-memory-per-child": ((), True),
        "--time-limit": ((), True),
        "--soft-time-limit": ((), True),
        "--events": (("-E",), False),
        "--beat": (("-B",), False),
        "--autoscale": ((), True),
        "--uid": ((), True),
        "--gid": ((), True),
        "--umask": ((), True),
    }


@pytest.mark.parametrize("cmdline", ["1 --app=proj", "1 --app proj", "1 -A proj", "1 -A=proj"])
def test_values_work_with_equals_or_as_the_next_argument(cmdline):
    assert nodes_for(cmdline)[0].options["--app"] == "proj"


def test_an_equals_value_may_start_with_a_dash_or_be_empty():
    assert nodes_for("1 --app=-x")[0].options["--app"] == "-x"
    assert nodes_for("1 --app=")[0].options["--app"] == ""


def test_a_value_of_a_single_dash_is_taken():
    assert nodes_for("1 --logfile -")[0].options["--logfile"] == "-"


@pytest.mark.parametrize("flag", ["-E", "--events", "-B", "--beat"])
def test_flags_never_consume_the_next_token(flag):
    spec = parse(f"{flag} web")
    assert spec.positionals == ["web"]


def test_a_flag_given_a_value_is_an_error():
    error = usage_error("1 --events=yes")
    assert error.message == "--events is a flag and takes no value"


def test_a_missing_value_at_the_end_is_an_error():
    error = usage_error("2 -c")
    assert error.message == "-c needs a value"
    assert error.hint == "write -c VALUE or -c=VALUE"


def test_an_option_looking_value_is_refused_with_the_equals_fix():
    error = usage_error("2 -Q:1 -c 3")
    assert error.message == "-Q:1 needs a value, but is followed by the option -c"
    assert error.hint == "if the value really starts with '-', write -Q:1=-c"


def test_a_value_option_before_double_dash_has_no_value():
    assert usage_error("2 -c -- x").message == "-c needs a value"


@pytest.mark.parametrize(
    ("given", "suggestion"),
    [
        ("--concurency", "--concurrency"),
        ("--queue", "--queues"),
        ("--log-level", "--loglevel"),
        ("--time-limt", "--time-limit"),
        ("--rolling-restart", "--rolling"),
    ],
)
def test_an_unknown_option_is_an_error_suggesting_the_closest(given, suggestion):
    error = usage_error(f"2 {given}=1")
    assert error.message == f"unknown option {given}"
    assert error.hint == f"did you mean {suggestion}?"


def test_an_unknown_option_with_nothing_close_points_to_help():
    error = usage_error("2 -z 1")
    assert error.message == "unknown option -z"
    assert error.hint == "see `fleet multi --help` for the options"


def test_detach_is_not_a_user_option_multi_adds_it_itself():
    assert usage_error("2 --detach").message == "unknown option --detach"


@pytest.mark.parametrize("given", ["-n:1 box", "--hostname:1=box"])
def test_the_host_cannot_be_set_per_node(given):
    error = usage_error(f"2 {given}")
    assert error.message.endswith("the host part cannot be set per node")
    assert "full name" in error.hint


@pytest.mark.parametrize("given", ["--prefix:1=x", "--timeout:2 3", "-q:1", "--workdir:1=/srv"])
def test_multi_options_cannot_be_given_per_node(given):
    error = usage_error(f"2 {given}")
    assert "is an option of fleet multi itself, not per node" in error.message


# -- multi's own options ---------------------------------------------------------------------


def test_multi_options_fill_the_spec_and_never_reach_the_nodes(tmp_path):
    spec = parse(
        f"2 --workdir {tmp_path} --executable /opt/py/bin/python --timeout 2.5 --rolling"
        " --json -q --verbose --no-color --signal HUP -n box"
    )
    assert (spec.workdir, spec.executable, spec.timeout) == (tmp_path, "/opt/py/bin/python", 2.5)
    assert (spec.rolling, spec.json, spec.quiet, spec.verbose, spec.no_color) == (True,) * 5
    assert (spec.signal, spec.hostname) == (Signals.SIGHUP, "box")
    assert spec.global_options == {}
    argv = expand_nodes(spec, is_root=True)[0].worker_argv()
    assert argv == [
        "worker",
        "-n",
        "w1@box",
        "--logfile=/var/log/fleet/w1%I.log",
        "--pidfile=/run/fleet/w1.pid",
    ]


def test_multi_flags_default_to_off():
    spec = parse("2")
    assert (spec.workdir, spec.executable, spec.timeout, spec.signal) == (None,) * 4
    assert (spec.rolling, spec.json, spec.quiet, spec.verbose, spec.no_color) == (False,) * 5


def test_every_multi_option_names_a_spec_field():
    fields = set(MultiSpec.__dataclass_fields__)
    assert {option.field for option in MULTI_OPTIONS} <= fields
    assert next(o for o in MULTI_OPTIONS if o.name == "--spec").field == "as_start"


def test_workdir_expands_the_home_directory(monkeypatch):
    monkeypatch.setenv("HOME", "/home/ann")
    assert parse("1 --workdir=~/proj").workdir == Path("/home/ann/proj")


@pytest.mark.parametrize("value", ["abc", "-1", "nan", "inf", "''"])
def test_a_bad_timeout_is_an_error(value):
    with pytest.raises(UsageError, match=r"not a number of seconds|needs a non-empty value"):
        parse(f"1 --timeout={value}")


def test_a_timeout_of_zero_is_allowed():
    assert parse("1 --timeout 0").timeout == 0.0


# -- signals ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("token", "expected"),
    [
        ("-TERM", Signals.SIGTERM),
        ("-KILL", Signals.SIGKILL),
        ("-HUP", Signals.SIGHUP),
        ("-INT", Signals.SIGINT),
        ("-QUIT", Signals.SIGQUIT),
        ("-USR1", Signals.SIGUSR1),
        ("-USR2", Signals.SIGUSR2),
        ("-SIGTERM", Signals.SIGTERM),
        ("-9", Signals.SIGKILL),
        ("-15", Signals.SIGTERM),  # celery multi only understood single digits
        ("--signal TERM", Signals.SIGTERM),
        ("--signal=SIGTERM", Signals.SIGTERM),
        ("--signal 15", Signals.SIGTERM),
        ("--signal=term", Signals.SIGTERM),
    ],
)
def test_signal_shorthands_and_the_signal_option_resolve_to_a_signal(token, expected):
    spec = parse(f"w1 {token}")
    assert spec.signal is expected
    assert spec.positionals == ["w1"]


def test_the_last_signal_given_wins():
    assert parse("w1 -TERM -KILL").signal is Signals.SIGKILL


@pytest.mark.parametrize(
    ("cmdline", "shown"),
    [("w1 -FOO", "-FOO"), ("w1 -99", "-99"), ("w1 -0", "-0"), ("w1 --signal=BAR", "--signal BAR")],
)
def test_an_unknown_signal_is_an_error_with_examples(cmdline, shown):
    with pytest.raises(UsageError) as caught:
        parse(cmdline)
    assert caught.value.message == f"unknown signal {shown}"
    assert caught.value.hint == multi.SIGNAL_EXAMPLES
    assert "-TERM" in caught.value.hint and "-9" in caught.value.hint


def test_single_letter_uppercase_options_are_options_not_signals():
    spec = parse("2 -A proj -Q q -L debug -E -B")
    assert spec.signal is None
    assert spec.global_options == {
        "--app": "proj",
        "--queues": "q",
        "--loglevel": "debug",
        "--events": True,
        "--beat": True,
    }


# -- passthrough -----------------------------------------------------------------------------


def test_everything_after_double_dash_goes_to_every_node_verbatim():
    nodes = nodes_for("2 -c 3 -- -c 5 --pidfile=x %n worker.prefetch=1 -- --bogus")
    expected = ("-c", "5", "--pidfile=x", "%n", "worker.prefetch=1", "--", "--bogus")
    assert [node.passthrough for node in nodes] == [expected, expected]
    assert [node.options["--concurrency"] for node in nodes] == ["3", "3"]
    assert nodes[0].worker_argv()[-8:] == ["--", *expected]


def test_no_double_dash_means_no_passthrough():
    node = nodes_for("1")[0]
    assert node.passthrough == ()
    assert "--" not in node.worker_argv()


# -- the node's argv -------------------------------------------------------------------------


def test_worker_argv_lists_options_in_table_order_whatever_the_input_order():
    first = nodes_for("1 -E -c 3 --pidfile=/p/%n.pid -A proj --logfile=/l/%n.log -Q a")[0]
    second = nodes_for("1 -Q a --logfile=/l/%n.log -A proj --pidfile=/p/%n.pid -c 3 -E")[0]
    expected = [
        "worker",
        "-n",
        f"w1@{HOST}",
        "--app=proj",
        "--concurrency=3",
        "--queues=a",
        "--logfile=/l/w1.log",
        "--pidfile=/p/w1.pid",
        "--events",
    ]
    assert first.worker_argv() == expected
    assert second.worker_argv() == expected


def test_every_option_value_is_percent_expanded_for_its_node_but_i_and_I():
    nodes = nodes_for("a b@other --config=/etc/%n/%h/%d/%p-%i%I.toml -Q %n,all")
    assert [node.options["--config"] for node in nodes] == [
        f"/etc/a/{HOST}/example.com/a@{HOST}-%i%I.toml",
        "/etc/b/other//b@other-%i%I.toml",
    ]
    assert [node.options["--queues"] for node in nodes] == ["a,all", "b,all"]


def test_an_unknown_expansion_in_an_option_value_is_an_error():
    assert "unknown expansion %x" in usage_error("1 -Q %x").message


def test_node_spec_exposes_name_parts_and_index():
    node = nodes_for("web img")[1]
    assert (node.name, node.short, node.host, node.index) == (f"img@{HOST}", "img", HOST, 2)


# -- pid files and log files -----------------------------------------------------------------


def test_root_defaults_are_the_system_run_and_log_directories():
    node = nodes_for("2", is_root=True)[1]
    assert node.pidfile == Path("/run/fleet/w2.pid")
    assert node.logfile == "/var/log/fleet/w2%I.log"
    assert node.options["--pidfile"] == "/run/fleet/w2.pid"
    assert node.options["--logfile"] == "/var/log/fleet/w2%I.log"


def test_non_root_defaults_live_in_the_users_state_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("FLEET_STATE_DIR", str(tmp_path / "state"))
    node = nodes_for("web", is_root=False)[0]
    assert node.pidfile == tmp_path / "state" / "run" / "web.pid"
    assert node.logfile == f"{tmp_path}/state/log/web%I.log"
    assert not (tmp_path / "state").exists()  # pure: nothing is created


def test_a_percent_in_the_state_directory_is_not_read_as_an_expansion(monkeypatch):
    monkeypatch.setenv("FLEET_STATE_DIR", "/srv/100%done")
    node = nodes_for("web", is_root=False)[0]
    assert node.pidfile == Path("/srv/100%done/run/web.pid")
    assert node.options["--pidfile"] == "/srv/100%%done/run/web.pid"  # the node expands it again


def test_given_pid_and_log_files_are_expanded_per_node():
    nodes = nodes_for("2 --pidfile=/p/%n.pid -f /l/%n%I.log")
    assert [node.pidfile for node in nodes] == [Path("/p/w1.pid"), Path("/p/w2.pid")]
    assert [node.logfile for node in nodes] == ["/l/w1%I.log", "/l/w2%I.log"]


def test_the_log_file_of_each_process_of_a_node():
    node = nodes_for("1 --logfile=/l/%n%I.log")[0]
    assert [node.logfile_for(index) for index in (0, 1, 2)] == [
        Path("/l/w1.log"),
        Path("/l/w1-1.log"),
        Path("/l/w1-2.log"),
    ]


def test_a_pidfile_with_i_is_the_main_process_path():
    assert nodes_for("1 --pidfile=/p/%n-%i.pid")[0].pidfile == Path("/p/w1-0.pid")


def test_a_literal_percent_in_a_log_file_survives_the_nodes_own_expansion():
    node = nodes_for("1 --logfile=/l/100%%/%n%I.log")[0]
    assert node.options["--logfile"] == "/l/100%%/w1%I.log"
    assert node.logfile_for(1) == Path("/l/100%/w1-1.log")


def test_pid_and_log_files_expand_the_home_directory(monkeypatch):
    monkeypatch.setenv("HOME", "/home/50%ann")
    node = nodes_for("1 --pidfile=~/run/%n.pid --logfile=~/log/%n.log")[0]
    assert node.pidfile == Path("/home/50%ann/run/w1.pid")
    assert node.options["--pidfile"] == "/home/50%%ann/run/w1.pid"
    assert node.logfile_for(0) == Path("/home/50%ann/log/w1.log")


def test_relative_pid_and_log_files_are_relative_to_the_workdir():
    node = nodes_for("1 --workdir=/srv/app --pidfile=run/%n.pid --logfile=/abs/%n.log")[0]
    assert node.pidfile == Path("/srv/app/run/w1.pid")
    assert node.logfile == "/abs/w1.log"


def test_relative_pid_files_without_a_workdir_stay_relative():
    assert nodes_for("1 --pidfile=%n.pid")[0].pidfile == Path("w1.pid")


def test_per_node_pid_files_are_allowed():
    nodes = nodes_for("2 --pidfile=/p/%n.pid --pidfile:2=/q/special.pid")
    assert [node.pidfile for node in nodes] == [Path("/p/w1.pid"), Path("/q/special.pid")]


def test_nodes_sharing_a_pid_file_are_an_error():
    error = usage_error("2 --pidfile=/p/one.pid")
    assert error.message == f"nodes w1@{HOST} and w2@{HOST} would share the pid file /p/one.pid"
    assert "%n (short name) or %p (full name)" in error.hint


def test_a_short_name_on_two_hosts_needs_the_full_name_in_the_pid_file():
    assert "would share the pid file /run/fleet/img.pid" in usage_error("img@a img@b").message
    nodes = nodes_for("img@a img@b --pidfile=/p/%p.pid")
    assert [node.pidfile for node in nodes] == [Path("/p/img@a.pid"), Path("/p/img@b.pid")]


def test_expansion_leaves_the_workdir_and_executable_out_of_the_node_argv(tmp_path):
    argv = nodes_for(f"1 --workdir={tmp_path} --executable=/x/python")[0].worker_argv()
    assert not [arg for arg in argv if "workdir" in arg or "executable" in arg]


# -- names, expand, select -------------------------------------------------------------------


def test_names_are_the_full_node_names():
    assert node_names(nodes_for("web img@x")) == [f"web@{HOST}", "img@x"]


def test_expand_fills_a_template_once_per_node():
    nodes = nodes_for("w1 foo@bar.example.com")
    assert expand_template("%n.pid", nodes) == ["w1.pid", "foo.pid"]
    assert expand_template("%p|%n|%h|%d|%i|%I|%%", nodes) == [
        f"w1@{HOST}|w1|{HOST}|example.com|%i|%I|%",
        "foo@bar.example.com|foo|bar.example.com|example.com|%i|%I|%",
    ]


def test_selecting_nothing_selects_every_node():
    nodes = nodes_for("3")
    assert select_nodes(nodes, []) == nodes


@pytest.mark.parametrize(
    ("selectors", "expected"),
    [
        (["w1"], ["w1"]),
        (["3"], ["w3"]),
        ([f"w2@{HOST}"], ["w2"]),
        (["5", "1-2"], ["w1", "w2", "w5"]),
        (["1-2,w5"], ["w1", "w2", "w5"]),
        (["w2", "2"], ["w2"]),
    ],
)
def test_select_nodes_by_name_position_and_range_in_node_order(selectors, expected):
    picked = select_nodes(nodes_for("5"), selectors)
    assert [node.short for node in picked] == expected


@pytest.mark.parametrize(
    ("selector", "reason"),
    [("w9", "no node is named 'w9'"), ("6", "there is no node 6: there are 5 nodes")],
)
def test_select_nodes_rejects_a_selector_that_matches_nothing(selector, reason):
    with pytest.raises(UsageError) as caught:
        select_nodes(nodes_for("5"), ["w1", selector])
    assert caught.value.message == f"node selector {selector!r} matches no node: {reason}"
    assert caught.value.hint == "valid: 1-5 or w1..w5"


def test_select_nodes_with_no_known_nodes_says_so():
    with pytest.raises(UsageError) as caught:
        select_nodes([], ["w1"])
    assert caught.value.hint == "valid: no nodes are known"
