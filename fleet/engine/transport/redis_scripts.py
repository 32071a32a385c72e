"""The Redis transport's Lua scripts: read once, addressed by SHA1, loaded all at once.

Each `redis_<name>.lua` next to this module is one atomic step (put, reserve, settle, ...);
`redis_lib.lua` is prepended to every one of them, so a script is self-contained. Calls send
only the digest (EVALSHA); a server that lost the scripts (restart, SCRIPT FLUSH) answers
NOSCRIPT and the transport loads them again (`RedisStore._with_scripts`).

Every script takes the clock's time as its first argument, before its own (see
redis_lib.lua and `RedisStore.script_args`).
"""

from __future__ import annotations

import hashlib
from importlib import resources

import redis

#: Every script, by name: fleet/engine/transport/redis_<name>.lua.
SCRIPT_NAMES = ("put", "reserve", "settle", "recover", "unregister", "consumer",
                "dead_letter", "purge", "lease")


class Scripts:
    """The scripts' source (with the library prepended) and SHA1 digest, by name."""

    def __init__(self) -> None:
        package = resources.files("fleet.engine.transport")
        lib = package.joinpath("redis_lib.lua").read_text(encoding="utf-8")
        self.source: dict[str, str] = {}
        self.sha: dict[str, str] = {}
        for name in SCRIPT_NAMES:
            text = lib + package.joinpath(f"redis_{name}.lua").read_text(encoding="utf-8")
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


_SCRIPTS: Scripts | None = None


def scripts() -> Scripts:
    """The scripts of this process, read on first use."""
    global _SCRIPTS
    if _SCRIPTS is None:
        _SCRIPTS = Scripts()
    return _SCRIPTS
