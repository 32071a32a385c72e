"""The Redis transport's own encoding and decoding (no server): the protocol it writes
itself on a put, script arguments, and replies turned into records."""

from __future__ import annotations

import pytest
from redis.connection import Connection

from fleet.engine.transport.base import Outgoing
from fleet.engine.transport.redis import (
    RedisTransport,
    _consumer_record,
    _deliveries,
    _flatten,
    _resp,
)


@pytest.mark.parametrize("args", [
    ("EVALSHA", "abc", 1, "fleet", "", "id", "q", 0, "", '{"a": "é"}'),
    ("PING",),
    ("SET", "k", "", -5, 2**40),
])
def test_resp_encoding_is_what_redis_py_packs(args):
    assert _resp(args) == b"".join(Connection().pack_command(*args))


def test_put_arguments_are_five_per_message_with_clamped_priorities():
    messages = [Outgoing("a", "q", "{}", priority=42), Outgoing("b", "r", "[]", eta=12.5)]

    assert RedisTransport._put_args(messages) == [
        "a", "q", 9, "", "{}", "b", "r", 0, "12.5", "[]"]


def test_a_reserve_reply_becomes_deliveries():
    flat = ["id1", "q", "{}", "7", 1, "id2", "r", "[]", 0, 0]

    got = _deliveries(flat)

    assert [(d.id, d.queue, d.body, d.priority, d.redelivered) for d in got] == [
        ("id1", "q", "{}", 7, True), ("id2", "r", "[]", 0, False)]


def test_replies_nested_in_a_transaction_are_flattened():
    error = ValueError("x")

    assert list(_flatten([1, [2, [3, error]], "s"])) == [1, 2, 3, error, "s"]


def test_a_consumer_only_known_from_reserve_gets_a_record_from_its_id():
    record = _consumer_record("w1@h#3f", 12.5, None)

    assert (record.node, record.queues, record.pid, record.host, record.last_heartbeat) == (
        "w1@h", [], 0, "", 12.5)
    full = _consumer_record("w1@h#3f", 1.0, '{"node": "w1@h", "queues": ["q"], "pid": 7, '
                                            '"host": "h", "info": {"active": 2}}')
    assert (full.queues, full.pid, full.info) == (["q"], 7, {"active": 2})
