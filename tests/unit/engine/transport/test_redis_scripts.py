"""Loading the Redis transport's Lua scripts (no server: what is loaded, and how)."""

from __future__ import annotations

import hashlib
from importlib import resources

from fleet.engine.transport.redis_scripts import SCRIPT_NAMES, Scripts, scripts


def test_every_script_is_the_library_then_its_own_file_addressed_by_sha1():
    loaded = Scripts()
    package = resources.files("fleet.engine.transport")
    lib = package.joinpath("redis_lib.lua").read_text(encoding="utf-8")

    for name in SCRIPT_NAMES:
        own = package.joinpath(f"redis_{name}.lua").read_text(encoding="utf-8")
        assert loaded.source[name] == lib + own
        assert loaded.sha[name] == hashlib.sha1(loaded.source[name].encode()).hexdigest()


def test_every_script_takes_the_clock_off_its_arguments_first():
    """redis_lib.lua shifts ARGV once, before any script reads it (see `script_args`)."""
    loaded = Scripts()

    for name in SCRIPT_NAMES:
        before_own_code = loaded.source[name].split("local function", 1)[0]
        assert "local CLOCK = table.remove(ARGV, 1)" in before_own_code
        assert "server_now" not in loaded.source[name]  # every time is the clock's


def test_the_scripts_are_read_once_per_process():
    assert scripts() is scripts()


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
