"""The one message format: JSON, versioned, and decoding errors that say what is wrong."""

from __future__ import annotations

import json

import pytest

from fleet.engine import message as codec
from fleet.exceptions import EncodeError, MessageDecodeError


def test_messages_round_trip_and_refuse_what_json_cannot_carry():
    msg = codec.build("t.add", (1, 2), {"k": [1, "x"]}, queue="q", priority=5)
    decoded = codec.decode(msg.encode())
    assert (decoded.task, decoded.args, decoded.kwargs, decoded.queue, decoded.priority) == \
        ("t.add", [1, 2], {"k": [1, "x"]}, "q", 5)
    assert json.loads(msg.encode())["v"] == codec.VERSION
    with pytest.raises(EncodeError, match="cannot be encoded as JSON"):
        codec.build("t.add", ({1},)).encode()
    with pytest.raises(EncodeError, match="must be a list or tuple"):
        codec.build("t.add", "ab")


@pytest.mark.parametrize(("body", "reason"), [
    ("nope", "not valid JSON"),
    ("[]", "not an object"),
    ('{"v": 2}', "unsupported message version 2"),
    ('{"v": 1, "id": "x"}', "missing field(s) task, args, kwargs"),
    ('{"v": 1, "id": "x", "task": "t", "args": {}, "kwargs": {}}', "field 'args'"),
    ('{"v": 1, "id": "x", "task": "t", "args": [], "kwargs": {}, "retries": "3"}',
     "field 'retries'"),
])
def test_decoding_says_exactly_what_is_wrong(body, reason):
    with pytest.raises(MessageDecodeError) as caught:
        codec.decode(body)
    assert reason in str(caught.value)
