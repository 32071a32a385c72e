"""The pool's pure parts: frames on the pipes, free slots, and when a child retires."""

from __future__ import annotations

import pytest

from fleet.engine.pool import (
    Child,
    ChildSettings,
    Pool,
    _retire_reason,
    decode_frame,
    encode_frame,
    split_frames,
    split_frames_one,
)


def test_frames_carry_a_json_header_and_a_raw_payload_and_split_when_complete():
    data = encode_frame({"id": "t1", "state": "SUCCESS"}, '{"result": 4}') + \
        encode_frame({"t": "up"})
    buffer = bytearray(data[:-3])
    assert split_frames(buffer) == [({"id": "t1", "state": "SUCCESS"}, b'{"result": 4}')]
    buffer += data[-3:]
    assert split_frames(buffer) == [({"t": "up"}, b"")] and not buffer
    assert decode_frame(b'{"a":1}\npayload') == ({"a": 1}, b"payload")
    one = bytearray(encode_frame({"b": 2}, b"x"))
    assert split_frames_one(one) == ({"b": 2}, b"x") and split_frames_one(one) is None


def test_a_frame_that_claims_to_be_huge_is_refused():
    with pytest.raises(ValueError, match="too large"):
        split_frames(bytearray(b"\xff\xff\xff\xff"))


def test_a_slot_whose_child_is_leaving_without_a_task_counts_as_free():
    pool = Pool(ChildSettings(None, "w@h", 0, None, None, None), concurrency=3)
    leaving, busy = Child(1, 101, -1, -1, retiring="pool shrank"), Child(2, 102, -1, -1)
    busy.job = "a job"
    pool.children = {101: leaving, 102: busy}
    assert pool.free_slots() == [1, 3]
    assert pool.busy() == [busy] and pool.pids() == [101, 102]
    assert not leaving.idle and not Child(3, 103, 5, 6).idle  # (not up yet)
    assert Child(3, 103, 5, 6, up=True).idle


def test_a_child_retires_after_its_task_limit():
    settings = ChildSettings(None, "w@h", 0, None, max_tasks=3, max_memory_kib=None)
    assert _retire_reason(settings, 2) is None
    assert _retire_reason(settings, 3) == "reached its limit of 3 tasks"
    tiny = ChildSettings(None, "w@h", 0, None, max_tasks=None, max_memory_kib=1)
    assert "over the limit of 1 KiB" in _retire_reason(tiny, 1)
