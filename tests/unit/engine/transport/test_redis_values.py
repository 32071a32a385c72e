"""The Redis transport's value helpers: TTLs, MATCH patterns and what storing a value sends
(no server: the commands are built, not run)."""

from __future__ import annotations

import pytest

from fleet.engine.transport import open_transport
from fleet.engine.transport.base import StoredResult
from fleet.engine.transport.redis_values import NOTE_TTL_MS, glob_escape, ttl_ms


@pytest.mark.parametrize(("ttl", "ms"), [(None, None), (0, None), (-1, None), (0.0001, 1),
                                         (1.5, 1500), (3600, 3_600_000)])
def test_ttl_in_milliseconds_for_px(ttl, ms):
    assert ttl_ms(ttl) == ms


def test_a_prefix_matches_only_literally_in_a_match_pattern():
    assert glob_escape("job*[1]?:a\\b") == "job\\*\\[1\\]\\?:a\\\\b"
    assert glob_escape("plain:key") == "plain:key"


def test_storing_a_value_sets_it_and_leaves_one_short_lived_notification():
    transport = open_transport("redis://127.0.0.1:1/0", {"prefix": "p"})

    kept = transport._store_commands(StoredResult("r", "v", ttl=60))
    forever = transport._store_commands(StoredResult("k", "w"))
    brief = transport._store_commands(StoredResult("b", "x", ttl=0.5))

    # (DEL, not LTRIM: a note key of another type must not fail the commit it rides in)
    assert kept == [("SET", "p:v:r", "v", "PX", 60_000), ("DEL", "p:n:r"),
                    ("LPUSH", "p:n:r", "v"), ("PEXPIRE", "p:n:r", NOTE_TTL_MS)]
    assert forever[0] == ("SET", "p:v:k", "w") and forever[-1][-1] == NOTE_TTL_MS
    assert brief[-1] == ("PEXPIRE", "p:n:b", 500)  # never outlives its value
