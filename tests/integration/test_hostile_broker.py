"""Garbage of every shape written into the broker while a 2-node fleet runs, on both
brokers (issue 13): both nodes keep their pids, every bad message is in the dead-letter
queue with its reason (keys of the wrong type are set aside and reported there), a node
started into the mess comes up, control requests and events fleet did not write are
ignored, and tasks sent afterwards complete."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from fleet.engine import message as codec
from fleet.engine.transport.base import DEAD_LETTER_QUEUE
from fleet.engine.transport.sqlite_store import path_from_url
from fleet.operator_errors import EXIT_DATA
from tests.garbage import BAD_BODIES, body, plant_redis, plant_redis_wrong_types, plant_sqlite
from tests.integration.test_malformed_entries import put_raw
from tests.support import APPS, run_fleet, wait_for

#: A node reads bodies up to this size here, so a "huge" body is cheap to write.
MAX_SIZE = 200_000

#: Control requests fleet never sent (a node logs and ignores each).
BAD_REQUESTS = ["garbage", "[1, 2]", json.dumps({"command": 5}), "[" * 100_000,
                json.dumps({"command": "ping", "destination": "w1"}),
                json.dumps({"command": "ping", "deadline": "soon"}),
                json.dumps({"command": "pool_grow", "arguments": [1]}),
                json.dumps({"command": "pool_grow", "arguments": {"n": 10**12},
                            "ticket": "t"}),
                json.dumps({"command": "time_limit", "ticket": "t", "arguments": {
                    "task": "testapp.add", "soft": "NaN"}}),
                '{"command": "ping", "deadline": NaN}']
#: Events fleet never sent (`fleet events` and the dashboard skip or clean each).
BAD_EVENTS = ["garbage", "{}", json.dumps([{"type": 5}, {"type": "task-started"}]),
              json.dumps({"type": "worker-heartbeat", "node": ["x"], "timestamp": "now",
                          "active": "many", "loadavg": ["a"], "freq": -1}),
              json.dumps({"type": "task-failed", "node": "n", "timestamp": 1e300,
                          "uuid": {}, "runtime": "fast"}),
              "[" * 100_000]


def dead_reasons(app) -> dict[str, str]:
    """Dead-letter reasons by message id (set-aside keys are reported under id '')."""
    return {letter.id: letter.reason for letter in app.broker.dead_letters(10_000)}


def dead_text(app) -> str:
    """Every dead-letter reason, one per line."""
    return "\n".join(letter.reason for letter in app.broker.dead_letters(10_000))


def plant_everything(app, broker_url: str) -> list[str]:
    """Every bad message body and raw entry; the words the dead letters must then hold."""
    broker = app.broker
    words = []
    if broker_url.startswith("redis"):
        # First keys of the wrong type (under a queue of their own, and the global ones,
        # the message bodies and the dead letters included), until the transport has set
        # them aside: writing them later would destroy what the others leave behind.
        words = [why for why in plant_redis_wrong_types(broker.client, "fleet", "aside")
                 if "reserved:c#1" not in why]  # (a consumer that never comes: stays junk)
        broker.put([codec_outgoing("aside")])
        wait_for(lambda: all(why in dead_text(app) for why in words), 20,
                 message="the keys of the wrong type to be set aside")
        words += plant_redis(broker.client, "fleet", "default", time.time())
    else:
        words = plant_sqlite(str(path_from_url(broker_url)), "default", time.time())
    for name, (text, _) in BAD_BODIES.items():
        put_raw(broker, f"bad-{name}", text)
    put_raw(broker, "bad-huge", body(args=["x" * (MAX_SIZE + 1)]))
    put_raw(broker, "bad-unknown-task", body(task="testapp.no_such_task"))
    return words


def codec_outgoing(queue: str):
    from fleet.engine.transport.base import Outgoing

    msg = codec.build("testapp.add", [1, 1], {}, queue=queue)
    return Outgoing(msg.id, queue, msg.encode())


@pytest.mark.slow
def test_garbage_in_every_key_never_takes_a_node_down(app, nodes, broker_url, env):
    node_env = {"FLEET_WORKER_MAX_MESSAGE_SIZE": str(MAX_SIZE)}
    w1 = nodes.start("-Q", "default,aside", name="w1", env=node_env)
    words = plant_everything(app, broker_url)
    # a node started into the mess (a dead consumer's garbage reservation, wrong key
    # types, bad rows) comes up: before, its start failed, and under systemd it looped
    w2 = nodes.start("-Q", "default,aside", name="w2", env=node_env)
    pids = (w1.pid, w2.pid)
    for payload in BAD_REQUESTS:
        app.broker.publish("control", payload)
    for payload in BAD_EVENTS:
        app.broker.publish("events", payload)

    expected = {f"bad-{name}": why for name, (_, why) in BAD_BODIES.items()}
    expected |= {"bad-huge": "over the limit", "bad-unknown-task": "unknown task"}
    if broker_url.startswith("sqlite"):  # (SQLite cannot hold that one as text: set aside)
        expected["bad-not UTF-8"] = "not a non-empty valid UTF-8 text"
    wait_for(lambda: set(expected) <= set(dead_reasons(app)), 30,
             message="every bad message in the dead-letter queue")
    reasons = dead_reasons(app)
    for msg_id, why in expected.items():
        assert why in reasons[msg_id], (msg_id, reasons[msg_id])
    everything = dead_text(app)
    for why in words:
        assert why in everything, why

    assert all(node.proc.poll() is None for node in (w1, w2))
    assert (w1.pid, w2.pid) == pids
    from testapp import add

    results = [add.delay(i, i) for i in range(20)]
    assert [r.get(timeout=20) for r in results] == [2 * i for i in range(20)]
    replies = app.control.ping(timeout=10)  # (returns once both answered)
    assert len(replies) == 2, replies
    for node in (w1, w2):
        assert "Traceback" not in node.log_text()  # every bad entry had a reason: no bug
        assert "ignored an unreadable control request" in node.log_text()

    # the CLI reads the broker as it is now: data errors are named, never "unreachable"
    done = run_fleet("queues", env=env)
    assert done.returncode == 0 and DEAD_LETTER_QUEUE in done.stdout, done.stderr
    garbage_id = "rd-garbage-result" if broker_url.startswith("redis") else "sq-garbage-result"
    done = run_fleet("result", garbage_id, "-t", "0", env=env)
    assert done.returncode == EXIT_DATA, done.stderr
    assert "cannot be read" in done.stderr and "unreachable" not in done.stderr
    assert done.stderr.count("\n") == 1


def test_the_issue_reproductions_cost_only_the_bad_entry(app, nodes, broker_url):
    # Regression (issue 13): each of these took nodes down (and restarted nodes died on the
    # same entry again).
    w1 = nodes.start(name="w1")
    broker = app.broker
    put_raw(broker, "time-limit-abc", body(options={"time_limit": "abc"}))
    put_raw(broker, "nan", body(args=[0]).replace('"args": [0]', '"args": [NaN]'))
    put_raw(broker, "brackets", "[" * 100_000)
    if broker_url.startswith("redis"):
        client = broker.client
        client.lpush("fleet:q:other", "a non-message")
        client.zadd("fleet:delayed:default", {"garbage": 0})
        client.zadd("fleet:consumers", {"gone#1": 0})
        client.hset("fleet:reserved:gone#1", "x", "garbage")
        ids = ["time-limit-abc", "nan", "brackets"]
    else:
        import sqlite3

        conn = sqlite3.connect(path_from_url(broker_url), isolation_level=None)
        conn.execute("INSERT INTO messages (id, queue, priority, body) VALUES "
                     "('high', 'default', 'high', ?)", (body(),))
        conn.close()
        ids = ["time-limit-abc", "nan", "brackets", "high"]
    w2 = nodes.start("-Q", "default,other", name="w2")
    wait_for(lambda: set(ids) <= set(dead_reasons(app)), 20, message="the dead letters")
    from testapp import add

    assert add.delay(2, 3).get(timeout=10) == 5
    assert w1.proc.poll() is None and w2.proc.poll() is None


def test_fleet_events_skips_events_fleet_did_not_send(app, nodes, env, tmp_path):
    nodes.start(name="w1")
    errors = tmp_path / "events.err"
    with open(errors, "w") as stderr:
        proc = subprocess.Popen([sys.executable, "-m", "fleet", "events", "--json"],
                                cwd=APPS, env=env, stdout=subprocess.PIPE, stderr=stderr,
                                text=True, start_new_session=True)
    try:
        wait_for(lambda: "listening on" in errors.read_text(), 10,
                 message="fleet events to listen")
        for payload in BAD_EVENTS:
            app.broker.publish("events", payload)
        good = {"type": "task-succeeded", "node": "n", "timestamp": time.time(),
                "uuid": "after-the-garbage", "name": "t", "runtime": 0.5}
        app.broker.publish("events", json.dumps([good]))
        time.sleep(1.0)
    finally:
        os.killpg(proc.pid, signal.SIGINT)
        out, _ = proc.communicate(timeout=10)
    err = errors.read_text()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    lines = [json.loads(line) for line in out.splitlines()]
    assert any(event.get("uuid") == "after-the-garbage" for event in lines)
    for event in lines:  # what it printed is clean: the bad fields were dropped
        assert isinstance(event["type"], str) and isinstance(event.get("node"), str | None)
        assert isinstance(event.get("timestamp", 0.0), int | float)


def test_a_bad_control_request_never_costs_a_reply_to_a_good_one(app, nodes):
    nodes.start(name="w1")
    for payload in BAD_REQUESTS:
        app.broker.publish("control", payload)
    assert list(app.control.ping(timeout=10).values()) == ["pong"]
    replies = app.control.broadcast("pool_grow", {"n": 10**6}, None, True, 10)
    (reply,) = replies.values()
    assert "worker_max_concurrency" in reply["error"] or "at most" in reply["error"]
    assert codec.MAX_DEPTH == 64  # (the nesting the bad requests exceed)
