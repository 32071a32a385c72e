"""Custom states and shadow names with real nodes, on both brokers (issue 17):
`self.update_state(state="PROGRESS", meta=...)` is seen by `AsyncResult.state`/`.info`,
`fleet result` and `fleet events`; `apply_async(shadow=...)` names the call in the node's
log and its events."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from tests.integration.test_remote import Lines
from tests.support import APPS, fleet_env, run_fleet, wait_for


@pytest.fixture
def hookapp(broker_url):
    import hookapp

    hookapp.app.conf.update(broker_url=broker_url)
    hookapp.app.close()
    yield hookapp
    hookapp.app.close()


def test_progress_is_visible_to_clients_the_cli_and_events(hookapp, nodes, broker_url,
                                                           tmp_path):
    from fleet import AsyncResult

    node = nodes.start("-E", app="hookapp")
    env = fleet_env(broker_url, FLEET_STATE_DIR=str(tmp_path / "state"))
    dump = subprocess.Popen([sys.executable, "-m", "fleet", "events", "--json"], cwd=APPS,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    try:
        Lines(dump.stderr).until(lambda line: "listening on" in line)
        out = Lines(dump.stdout)
        result = hookapp.progress.delay(3, 0.4)
        wait_for(lambda: result.state == "PROGRESS", 10, message="the PROGRESS state")
        seen = AsyncResult(result.id)  # the current app: hookapp's
        assert seen.info["total"] == 3 and 1 <= seen.info["done"] <= 3
        shown = run_fleet("result", result.id, "--timeout", "0", env=env)
        assert shown.returncode == 1 and shown.stdout.startswith("PROGRESS {\"done\": ")
        lines = out.until(lambda line: json.loads(line).get("type") == "task-updated")
        update = json.loads(lines[-1])
        assert (update["uuid"], update["state"], update["info"]["total"]) == \
            (result.id, "PROGRESS", 3)
        assert update["node"] == node.log_text().split("node:")[1].split()[0]
        assert result.get(timeout=10) == 3 and result.info == 3  # SUCCESS: the result
        shadowed = hookapp.add.apply_async((1, 2), shadow="add for the nightly report")
        assert shadowed.get(timeout=10) == 3
        lines = out.until(lambda line: shadowed.id in line and "task-succeeded" in line)
        names = {json.loads(line)["name"] for line in lines if shadowed.id in line}
        assert names == {"add for the nightly report"}
        assert f"Task add for the nightly report[{shadowed.id}] succeeded" in node.log_text()
        assert hookapp.app.AsyncResult(shadowed.id).name == "hookapp.add"  # results: real
    finally:
        os.killpg(dump.pid, signal.SIGKILL)
        dump.wait(5)
