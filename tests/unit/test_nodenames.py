"""The % expansions: every token, in each of the three expanders, means one thing."""

from __future__ import annotations

import pytest

from fleet import nodenames
from fleet.nodenames import format_node, host_format, preformat_node, split_node
from fleet.operator_errors import UsageError

NODE = "w1@host.example.com"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("%p", "w1@host.example.com"),
        ("%n", "w1"),
        ("%h", "host.example.com"),
        ("%d", "example.com"),
        ("%%", "%"),
        ("%i", "%i"),
        ("%I", "%I"),
        ("/var/log/%n%I.log", "/var/log/w1%I.log"),
        ("no tokens", "no tokens"),
    ],
)
def test_format_node_without_index_expands_every_token_but_i_and_I(template, expected):
    assert format_node(template, NODE) == expected


@pytest.mark.parametrize(
    ("template", "index", "expected"),
    [
        ("%i", 0, "0"),
        ("%i", 3, "3"),
        ("%I", 0, ""),
        ("%I", 2, "-2"),
        ("%n%I.log", 0, "w1.log"),
        ("%n%I.log", 1, "w1-1.log"),
        ("%p|%n|%h|%d|%%", 1, "w1@host.example.com|w1|host.example.com|example.com|%"),
    ],
)
def test_format_node_with_an_index_expands_i_and_I_for_that_process(template, index, expected):
    assert format_node(template, NODE, index) == expected


def test_format_node_gives_an_empty_domain_for_a_single_label_host():
    assert format_node("[%d]", "w1@vm") == "[]"


def test_format_node_of_a_name_without_host_uses_this_machine(monkeypatch):
    monkeypatch.setattr(nodenames, "gethostname", lambda: "box.lan")
    assert format_node("%p %h", "w1") == "w1@box.lan box.lan"


@pytest.mark.parametrize("template", ["%x", "a%Zb", "%N"])
def test_an_unknown_token_is_a_usage_error_listing_the_valid_ones(template):
    with pytest.raises(UsageError) as caught:
        format_node(template, NODE)
    assert f"unknown expansion %{template.split('%')[1][0]}" in caught.value.message
    assert "%p (full node name)" in caught.value.hint
    assert "write %% for a literal %" in caught.value.hint


@pytest.mark.parametrize("index", [None, 0, 2])
def test_a_lone_percent_at_the_end_is_an_error_not_kept_silently(index):
    # Regression: with %i/%I kept, the empty token after a trailing % matched `"" in "iI"`.
    with pytest.raises(UsageError, match="a lone % at the end"):
        format_node("/var/log/100%", NODE, index)


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("%p", "w1@host.example.com"),
        ("%n", "w1"),
        ("%h", "host.example.com"),
        ("%d", "example.com"),
        ("%%", "%%"),
        ("%i", "%i"),
        ("%I", "%I"),
        ("/tmp/100%%/%n%I.log", "/tmp/100%%/w1%I.log"),
    ],
)
def test_preformat_node_keeps_i_I_and_escaped_percent_for_the_nodes_own_pass(template, expected):
    assert preformat_node(template, NODE) == expected


def test_preformat_then_format_gives_the_same_path_as_one_format():
    # Regression: multi's format_node turned %% into %, and the node's pass then failed on it.
    template = "/tmp/100%%/%n%I.log"
    assert format_node(preformat_node(template, NODE), NODE, 2) == "/tmp/100%/w1-2.log"
    assert format_node(template, NODE, 2) == "/tmp/100%/w1-2.log"


def test_preformat_node_escapes_a_percent_inside_a_substituted_value():
    assert preformat_node("%n.pid", "50%@host") == "50%%.pid"


def test_preformat_node_rejects_unknown_tokens_and_a_lone_percent():
    with pytest.raises(UsageError, match="unknown expansion %x"):
        preformat_node("%x", NODE)
    with pytest.raises(UsageError, match="a lone % at the end"):
        preformat_node("x%", NODE)


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("w1@%h", "w1@george.example.com"),
        ("w1@%n", "w1@george"),
        ("w1@%d", "w1@example.com"),
        ("w1@%p", "w1@george.example.com"),
        ("w1@a%%b", "w1@a%b"),
        ("%n@%h", "george@george.example.com"),
        ("w1", "w1@george.example.com"),
        ("w1@other", "w1@other"),
    ],
)
def test_host_format_expands_worker_node_names_with_this_host(name, expected):
    assert host_format(name, "george.example.com") == expected


def test_host_format_rejects_process_index_tokens():
    with pytest.raises(UsageError, match="unknown expansion %i"):
        host_format("w%i@%h", "george")


@pytest.mark.parametrize(
    ("nodename", "expected"),
    [("w1@host", ("w1", "host")), ("w1@a@b", ("w1", "a@b"))],
)
def test_split_node_splits_at_the_first_at_sign(nodename, expected):
    assert split_node(nodename) == expected


def test_every_documented_token_is_tested_here():
    assert set(nodenames.TOKENS) == {"p", "n", "h", "d", "i", "I", "%"}
