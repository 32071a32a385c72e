"""fleet.daemon: the platform's daemon primitives: pid files, log files, uid/gid and umask."""

from __future__ import annotations

import os

import pytest

from fleet.daemon import log_tail, parse_umask, resolve_ids
from fleet.operator_errors import UsageError


def test_umask_and_user_checks():
    assert parse_umask(None) == 0o022 and parse_umask("027") == 0o027
    with pytest.raises(UsageError):
        parse_umask("999")
    with pytest.raises(UsageError, match="no such user"):
        resolve_ids("no-such-user-here", None)
    with pytest.raises(UsageError, match="no such group"):
        resolve_ids(None, "no-such-group-here")
    assert resolve_ids(str(os.getuid()), None)[0] == os.getuid()


def test_log_tail_gives_the_last_non_empty_lines(tmp_path):
    log = tmp_path / "w1.log"
    log.write_text("".join(f"line {n}\n\n" for n in range(30)))
    assert log_tail(log, 3) == ["line 27", "line 28", "line 29"]
    assert log_tail(tmp_path / "missing.log") == []
