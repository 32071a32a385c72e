"""fleet.multictl.state: what multi remembers about the nodes it started, and its state file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from fleet.multi import expand_nodes, parse_multi_args
from fleet.multictl.state import NodeRecord, StateFile, record_for
from fleet.operator_errors import FleetError


def record(tmp_path: Path, name: str = "w1@h", **fields) -> NodeRecord:
    values = {"argv": ["python", "-m", "fleet", "worker", "--detach", "-n", name],
              "workdir": str(tmp_path), "pidfile": str(tmp_path / "w1.pid"),
              "logfile": str(tmp_path / "w1%I.log"), **fields}
    return NodeRecord(name, **values)


def test_the_state_file_round_trips_every_field(tmp_path):
    state = StateFile(tmp_path / "multi.toml")
    original = record(tmp_path, pid=123, create_time=1700000000.25, started="2026-11-28T05:00")
    state.remember([original])
    assert state.load() == {"w1@h": original}


def test_a_missing_state_file_means_no_known_nodes(tmp_path):
    assert StateFile(tmp_path / "nothing.toml").load() == {}


def test_a_corrupt_state_file_is_an_error_saying_what_to_do(tmp_path):
    path = tmp_path / "multi.toml"
    path.write_text("[nodes\n")
    with pytest.raises(FleetError, match="move it away"):
        StateFile(path).load()


def test_concurrent_updates_never_lose_a_node(tmp_path):
    path = tmp_path / "multi.toml"
    script = (
        "import sys; from fleet.multictl.state import StateFile, NodeRecord\n"
        "for i in range(15):\n"
        "    n = f'{sys.argv[2]}{i}@h'\n"
        "    StateFile(sys.argv[1]).remember([NodeRecord(n, ['x'], '.', n, n)])\n"
    )
    writers = [subprocess.Popen([sys.executable, "-c", script, str(path), prefix])
               for prefix in ("a", "b", "c")]
    assert [writer.wait(60) for writer in writers] == [0, 0, 0]
    assert len(StateFile(path).load()) == 45
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_a_record_keeps_the_full_command_the_directory_and_absolute_files(tmp_path):
    spec = parse_multi_args(["w1", "-A", "proj", "--pidfile=run/%n.pid", "--logfile=%n%I.log"],
                            hostname="h")
    made = record_for(expand_nodes(spec)[0], executable="/usr/bin/python3", workdir=tmp_path)
    assert made.argv[:6] == ["/usr/bin/python3", "-m", "fleet", "worker", "--detach", "-n"]
    assert "--app=proj" in made.argv
    assert made.workdir == str(tmp_path)
    assert made.pidfile == str(tmp_path / "run" / "w1.pid")
    assert made.main_log == tmp_path / "w1.log"
