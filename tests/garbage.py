"""Garbage of every shape for the broker tests: message bodies fleet must refuse, and raw
writes into every kind of Redis key and SQLite row the transports use.

`BAD_BODIES` are bodies a node must dead-letter (each with the words its reason must hold);
`plant_redis` and `plant_sqlite` write entries fleet did not write, straight into the store,
and return what each must leave behind: words of a dead-letter reason.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any

from fleet.engine import message as codec


def message(**changes: Any) -> dict[str, Any]:
    """A valid message of testapp.add as a dict, with `changes` applied (a value of
    `...` removes the field)."""
    data = codec.build("testapp.add", [1, 2], {}).to_dict()
    for key, value in changes.items():
        if value is ...:
            data.pop(key, None)
        else:
            data[key] = value
    return data


def body(**changes: Any) -> str:
    return json.dumps(message(**changes))


def _with(text: str, placeholder: str, raw: str) -> str:
    return text.replace(json.dumps(placeholder), raw)


#: name -> (body, words the dead-letter reason holds). Bodies are text, except the one
#: that is not UTF-8 (bytes).
BAD_BODIES: dict[str, tuple[str | bytes, str]] = {
    "not JSON": ("garbage, not JSON", "not valid JSON"),
    "a JSON array": ("[1, 2, 3]", "not an object"),
    "NaN": (_with(body(args=["@"]), "@", "NaN"), "NaN"),
    "Infinity": (_with(body(args=["@"]), "@", "-Infinity"), "Infinity"),
    "a float out of range": (_with(body(args=["@"]), "@", "1e999"), "out of range"),
    "100 KB of [": ("[" * 100_000, "nested deeper"),
    "nested 70 deep": (body(args=[json.loads("[" * 70 + "]" * 70)]), "nested deeper"),
    "too many digits": (_with(body(args=["@"]), "@", "9" * 5000), "digits"),
    "not UTF-8": (b"\xff\xfe{\"v\": 1}", "UTF-8"),
    "a lone surrogate": (_with(body(args=["@"]), "@", '"\\ud800"'), "surrogate"),
    "time_limit 'abc'": (body(options={"time_limit": "abc"}), "options.time_limit"),
    "soft_time_limit -1": (body(options={"soft_time_limit": -1}), "options.soft_time_limit"),
    "acks_late 'yes'": (body(options={"acks_late": "yes"}), "options.acks_late"),
    "version true": (body(v=True), "version"),
    "version 2": (body(v=2), "version"),
    "no id": (body(id=...), "missing field"),
    "id 5": (body(id=5), "'id'"),
    "empty id": (body(id=""), "'id'"),
    "id with a newline": (body(id="a\nforged log line"), "'id'"),
    "task None": (body(task=None), "'task'"),
    "args a dict": (body(args={}), "'args'"),
    "kwargs a list": (body(kwargs=[]), "'kwargs'"),
    "queue 7": (body(queue=7), "'queue'"),
    "priority 'high'": (body(priority="high"), "'priority'"),
    "priority 99": (body(priority=99), "'priority'"),
    "priority true": (body(priority=True), "'priority'"),
    "eta 'tomorrow'": (body(eta="tomorrow"), "'eta'"),
    "eta -5": (body(eta=-5), "'eta'"),
    "eta 1e300": (body(eta=1e300), "'eta'"),
    "expires []": (body(expires=[]), "'expires'"),
    "retries -1": (body(retries=-1), "'retries'"),
    "retries 2**70": (body(retries=2**70), "'retries'"),
    "root_id 1": (body(root_id=1), "'root_id'"),
    "headers a list": (body(headers=[]), "'headers'"),
    "redeliveries 'x'": (body(headers={"x-fleet-redeliveries": "x"}), "redeliveries"),
    "options a string": (body(options="fast"), "'options'"),
    "callbacks a list": (body(callbacks=[]), "'callbacks'"),
    "a link that is a number": (body(callbacks={"link": [5]}), "callbacks.link[0]"),
    "a chain task 9": (body(callbacks={"chain": [{"task": 9}]}), "callbacks.chain[0].task"),
    "a chord size 'x'": (body(callbacks={"chord": {"group": "g", "size": "x"}}),
                         "callbacks.chord.size"),
    "a signature kind 'x'": (body(callbacks={"link": [{"kind": "x", "task": "t"}]}), "kind"),
    "sent_at 'now'": (body(sent_at="now"), "'sent_at'"),
    "origin 5": (body(origin=5), "'origin'"),
}


def plant_redis(client: Any, prefix: str, queue: str, now: float) -> list[str]:
    """Write entries fleet did not write into every kind of key the Redis transport uses
    (see the layout at the top of fleet/engine/transport/redis.py), around `queue`; return
    words of the dead-letter reasons they must leave behind."""
    key = f"{prefix}:{{}}".format
    good = body()
    client.hset(key("msg"), "rd-garbage-member", good)
    client.zadd(key(f"delayed:{queue}"), {"no bar here": now - 1,
                                          "abc|rd-garbage-member": now - 1})
    client.zadd(key(f"q:{queue}"), {"rd-ghost": 0})  # an id without a body
    client.hset(key("reserved:dead#1"), mapping={"rd-bad-reservation": "garbage",
                                                 "rd-other": "0|0|x|y|z|"})
    client.hset(key("msg"), mapping={"rd-bad-reservation": good, "rd-other": good})
    client.zadd(key("consumers"), {"dead#1": 0})
    client.set(key("consumer:dead#1"), "not json")
    client.lpush(key("dead"), "not a dead letter")
    client.set(key("lease:beat"), "garbage")
    client.lpush(key("lease:other"), "x")
    client.set(key("n:result:rd-note"), "a note that is a string")
    client.set(key("v:result:rd-garbage-result"), "not a result")
    client.lpush(key("v:revoked.version"), "a revoke counter that is a list")
    return ["not \"<score>|<id>\"", "no message body is stored", "reservation of dead#1"]


def plant_redis_wrong_types(client: Any, prefix: str, queue: str) -> list[str]:
    """Keys of the wrong type where the transport keeps its structures: each is set aside
    (renamed) and reported in the dead letters."""
    key = f"{prefix}:{{}}".format
    client.lpush(key(f"q:{queue}"), "a non-message")  # the LPUSH
    client.set(key(f"delayed:{queue}"), "x")
    client.set(key("queues"), "x")
    client.set(key("redelivered"), "x")
    client.set(key("seq"), "not a number")
    client.set(key("msg"), "x")
    client.set(key("consumers"), "x")
    client.set(key("reserved:c#1"), "x")
    client.set(key("dead"), "x")
    return [f"key {key(f'q:{queue}')} held a list, not a zset",
            f"key {key(f'delayed:{queue}')} held a string, not a zset",
            f"key {key('seq')} is not a counter",
            f"key {key('msg')} held a string, not a hash",
            f"key {key('queues')} held a string, not a set",
            f"key {key('redelivered')} held a string, not a set",
            f"key {key('consumers')} held a string, not a zset",
            f"key {key('reserved:c#1')} held a string, not a hash",
            f"key {key('dead')} was not a list"]


def plant_sqlite(path: str, queue: str, now: float) -> list[str]:
    """Write rows fleet did not write into every table of the SQLite broker (see the top of
    fleet/engine/transport/sqlite.py); return words of the reasons they must leave behind."""
    good = body()
    conn = sqlite3.connect(path, timeout=30, isolation_level=None)
    try:
        rows = [
            ("sq-priority", queue, "high", None, good),
            ("sq-body-number", queue, 0, None, 12345),
            ("sq-body-blob", queue, 0, None, b"\xff\xfe\x00"),
            ("sq-eta-text", queue, 0, "abc", good),
            ("sq-priority-real", queue, 1.5, None, good),
            ("sq-not-json", queue, 0, None, "{not json"),
        ]
        conn.executemany("INSERT INTO messages (id, queue, priority, eta, body) "
                         "VALUES (?,?,?,?,?)", rows)
        conn.execute("INSERT INTO messages (id, queue, priority, body) VALUES "
                     "(?, ?, 0, CAST(x'c328ffff' AS TEXT))", ("sq-bad-utf8", queue))
        conn.execute("INSERT INTO messages (id, queue, priority, body) VALUES (x'00ff', ?, 0, ?)",
                     (queue, good))
        conn.executemany("INSERT INTO scheduled (id, queue, priority, eta, body) "
                         "VALUES (?,?,?,?,?)",
                         [("sq-sched-eta", queue, 0, "soon", good),
                          ("sq-sched-priority", queue, "x", now - 1, good)])
        conn.execute("INSERT INTO consumers (id, node, queues, pid, host, heartbeat, info) "
                     "VALUES ('dead#2', 'dead', 'not json', 'x', 'h', 'abc', '{')")
        conn.execute("INSERT INTO messages (id, queue, priority, body, owner, started) "
                     "VALUES ('sq-held-by-dead', ?, 0, ?, 'dead#2', 'x')", (queue, good))
        conn.execute("INSERT INTO dead_letters (id, queue, body, reason, at) "
                     "VALUES (1, 2, x'ff', 4, 'never')")
        conn.execute("INSERT INTO kv (key, value, expires) VALUES "
                     "('result:sq-garbage-result', x'ff00', 'abc')")
    finally:
        conn.close()
    # (SQLite's column affinity turns the number 12345 of a body into the text '12345': the
    # codec refuses that one)
    return ["priority is text 'high'", "body is bytes", "eta is text", "priority is text 'x'",
            "priority is a number 1.5", "its id is bytes"]
