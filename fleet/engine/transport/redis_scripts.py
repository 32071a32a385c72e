"""The Redis transport's Lua scripts: read once, addressed by SHA1, loaded all at once.

Each `redis_<name>.lua` next to this module is one atomic step (put, reserve, settle, ...);
`redis_lib.lua` is prepended to every one of them, so a script is self-contained. Calls send
only the digest (EVALSHA); a server that lost the scripts (restart, SCRIPT FLUSH) answers
NOSCRIPT and the transport loads them again (`RedisStore._with_scripts`).

Each script comes in two variants that differ only in their first line, which sets CLOCK
(see redis_lib.lua): for the real clock, the server's TIME (the scripts take exactly the
arguments they document: nothing extra on the wire of the hot path); for a test's clock,
the time passed as one leading argument (`RedisStore.script_args`). A transport loads and
calls only the variant of its clock.
"""

from __future__ import annotations

import hashlib
from importlib import resources

import redis

#: Every script, by name: fleet/engine/transport/redis_<name>.lua.
SCRIPT_NAMES = ("put", "reserve", "settle", "recover", "unregister", "consumer",
                "dead_letter", "purge", "lease")

#: The first line of a script, by whether the time is passed in (True) or the server's.
CLOCK_LINES = {
    False: "local CLOCK = ''  -- the server's clock (TIME)\n",
    True: "local CLOCK = table.remove(ARGV, 1)  -- a test's clock, passed in\n",
}


class Scripts:
    """The scripts of one variant: source (clock line and library prepended) and SHA1
    digest, by name."""

    def __init__(self, clock_passed: bool = False) -> None:
        package = resources.files("fleet.engine.transport")
        head = CLOCK_LINES[clock_passed] + package.joinpath("redis_lib.lua").read_text(
            encoding="utf-8")
        self.source: dict[str, str] = {}
        self.sha: dict[str, str] = {}
        for name in SCRIPT_NAMES:
            text = head + package.joinpath(f"redis_{name}.lua").read_text(encoding="utf-8")
            self.source[name] = text
            self.sha[name] = hashlib.sha1(text.encode("utf-8"),
                                         usedforsecurity=False).hexdigest()

    def load(self, client: redis.Redis) -> None:
        """SCRIPT LOAD every script in one transaction (one round trip), so at any moment
        the server has all of them or none, and pipelines can use EVALSHA."""
        pipe = client.pipeline(transaction=True)
        for text in self.source.values():
            pipe.script_load(text)
        pipe.execute()


_SCRIPTS: dict[bool, Scripts] = {}


def scripts(clock_passed: bool = False) -> Scripts:
    """The scripts of this process for that kind of clock, read on first use."""
    variant = _SCRIPTS.get(clock_passed)
    if variant is None:
        variant = _SCRIPTS[clock_passed] = Scripts(clock_passed)
    return variant
