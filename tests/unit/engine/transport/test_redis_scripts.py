"""Loading the Redis transport's Lua scripts (no server: what is loaded, and how)."""

from __future__ import annotations

import hashlib
from importlib import resources

import pytest

from fleet.engine.transport.redis_scripts import CLOCK_LINES, SCRIPT_NAMES, Scripts, scripts


@pytest.mark.parametrize("clock_passed", [False, True])
def test_every_script_is_a_clock_line_the_library_and_its_own_file_by_sha1(clock_passed):
    loaded = Scripts(clock_passed)
    package = resources.files("fleet.engine.transport")
    lib = package.joinpath("redis_lib.lua").read_text(encoding="utf-8")

    for name in SCRIPT_NAMES:
        own = package.joinpath(f"redis_{name}.lua").read_text(encoding="utf-8")
        assert loaded.source[name] == CLOCK_LINES[clock_passed] + lib + own
        assert loaded.sha[name] == hashlib.sha1(loaded.source[name].encode()).hexdigest()


def test_the_two_variants_differ_only_in_where_the_time_comes_from():
    server, passed = Scripts(clock_passed=False), Scripts(clock_passed=True)

    for name in SCRIPT_NAMES:
        assert server.source[name].split("\n", 1)[1] == passed.source[name].split("\n", 1)[1]
        assert server.sha[name] != passed.sha[name]
    assert "TIME" in CLOCK_LINES[False] and "table.remove(ARGV, 1)" in CLOCK_LINES[True]


def test_the_scripts_are_read_once_per_process_and_variant():
    assert scripts() is scripts(clock_passed=False)
    assert scripts(clock_passed=True) is scripts(clock_passed=True) is not scripts()


def test_load_sends_every_script_in_one_transaction():
    calls = []

    class Pipe:
        def script_load(self, text):
            calls.append(text)

        def execute(self):
            calls.append("EXEC")

    class Client:
        def pipeline(self, transaction):
            assert transaction is True
            return Pipe()

    loaded = Scripts()
    loaded.load(Client())

    assert calls == [*loaded.source.values(), "EXEC"]
