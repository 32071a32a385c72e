"""`fleet worker` (fleet/cli/worker.py): its click options come from the worker's table."""

from __future__ import annotations

import subprocess
import sys

from fleet.cli import cli
from fleet.cli.worker import worker
from fleet.multi import WORKER_OPTIONS
from fleet.operator_errors import EXIT_USAGE


def test_every_option_multi_passes_on_is_one_fleet_worker_takes():
    """WORKER_OPTIONS must match `fleet worker`: the same spellings, value or flag."""
    accepted = {spelling: not param.is_flag for param in worker.params
                if hasattr(param, "is_flag") for spelling in param.opts}
    for option in WORKER_OPTIONS:
        for spelling in (option.name, *option.aliases):
            assert spelling in accepted, f"fleet worker has no {spelling}"
            assert accepted[spelling] == option.takes_value, spelling


def test_uid_without_detach_is_a_usage_error():
    result = subprocess.run([sys.executable, "-m", "fleet", "worker", "--uid", "nobody"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == EXIT_USAGE and "--detach" in result.stderr
    assert cli.commands["multi"] is not None
