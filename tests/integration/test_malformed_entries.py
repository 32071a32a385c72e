"""Entries fleet did not write, in every kind of key or row each broker uses: no transport
call fails because of them, each is set aside in the dead letters with its reason, and the
good messages around them still flow (issue 13). The same garbage under a running fleet is
in test_hostile_broker.py."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
import redis

from fleet.engine import message as codec
from fleet.engine.transport import open_transport
from fleet.engine.transport.base import Batch, Outgoing, StoredResult
from fleet.engine.transport.sqlite_store import path_from_url
from fleet.exceptions import BrokerDataError, MessageDecodeError
from tests.garbage import BAD_BODIES, body, plant_redis, plant_redis_wrong_types, plant_sqlite

QUEUE = "default"


@pytest.fixture
def broker(broker_url: str) -> Iterator:
    opened = open_transport(broker_url)
    opened.ping()  # (a new SQLite file gets its tables)
    try:
        yield opened
    finally:
        opened.close()


def put_raw(broker, msg_id: str, text: str | bytes) -> None:
    """A body as something else than fleet would put it (bytes that are not UTF-8 too)."""
    if isinstance(text, str):
        broker.put([Outgoing(msg_id, QUEUE, text)])
    elif broker.url.startswith("redis"):
        client = redis.Redis.from_url(broker.url)
        client.hset("fleet:msg", msg_id, text)
        client.zadd(f"fleet:q:{QUEUE}", {msg_id: 9 * 2**43})
        client.close()
    else:
        import sqlite3

        conn = sqlite3.connect(path_from_url(broker.url), isolation_level=None)
        conn.execute("INSERT INTO messages (id, queue, priority, body) VALUES (?, ?, 0, "
                     "CAST(? AS TEXT))", (msg_id, QUEUE, text))
        conn.close()


def reserve_all(broker, consumer: str = "c#1", queues: tuple = (QUEUE,)) -> list:
    got = []
    while batch := broker.reserve(consumer, list(queues), 100):
        got += batch
    return got


def reasons(broker) -> str:
    return "\n".join(letter.reason for letter in broker.dead_letters(10_000))


def test_every_bad_body_is_delivered_as_it_is_and_refused_by_the_codec(broker):
    for name, (text, _) in BAD_BODIES.items():
        put_raw(broker, f"bad-{name}", text)
    got = {delivery.id: delivery for delivery in reserve_all(broker)}
    refused = {}
    for name, (_, words) in BAD_BODIES.items():
        delivery = got.pop(f"bad-{name}", None)
        if delivery is None:  # a body SQLite cannot hold as text: set aside by the broker
            assert "not a non-empty valid UTF-8 text" in reasons(broker), name
            continue
        with pytest.raises(MessageDecodeError) as caught:
            codec.decode(delivery.body)
        refused[name] = caught.value.one_line()
        assert words in refused[name], (name, refused[name])
    assert not got


def test_wrong_redis_key_types_are_set_aside_and_reported(broker, broker_url):
    if not broker_url.startswith("redis"):
        pytest.skip("Redis keys")
    client = broker.client
    expected = plant_redis_wrong_types(client, "fleet", QUEUE)
    good = codec.build("testapp.add", [1, 2], {})
    broker.put([Outgoing(good.id, QUEUE, good.encode())])  # the put itself sets keys aside
    assert [d.id for d in reserve_all(broker)] == [good.id]
    text = reasons(broker)
    for words in expected:
        assert words in text
    aside = client.keys("fleet:aside:*")
    assert len(aside) == len(expected) and client.type(f"fleet:q:{QUEUE}") == "none"


def test_the_issue_lpush_into_a_queue_key_costs_only_itself(broker, broker_url):
    # Regression: one LPUSH of a non-message into a queue key killed every node of the
    # fleet (WRONGTYPE from the reserve script), and restarted nodes died on it again.
    if not broker_url.startswith("redis"):
        pytest.skip("Redis keys")
    broker.client.lpush(f"fleet:q:{QUEUE}", "a non-message")
    assert broker.reserve("c#1", [QUEUE], 10) == []
    assert "held a list, not a zset" in reasons(broker)
    good = codec.build("testapp.add", [1, 2], {})
    broker.put([Outgoing(good.id, QUEUE, good.encode())])
    assert [d.id for d in broker.reserve("c#1", [QUEUE], 10)] == [good.id]


def test_malformed_redis_entries_never_fail_a_call(broker, broker_url):
    if not broker_url.startswith("redis"):
        pytest.skip("Redis keys")
    expected = plant_redis(broker.client, "fleet", QUEUE, time.time())
    report = broker.recover(1.0)  # dead#1's garbage reservations: dead letters
    assert "dead#1" in report.dead_consumers and report.requeued == 0
    deliveries = reserve_all(broker)
    assert deliveries == []  # (the ghost id and the bad members were set aside)
    text = reasons(broker)
    for words in expected:
        assert words in text
    assert broker.queue_stats() and broker.consumers() == []
    assert broker.acquire_lease("beat", "me", 10) and broker.acquire_lease("other", "me", 10)
    with pytest.raises(BrokerDataError, match="cannot be read"):
        from fleet import Fleet

        app = Fleet("t", broker=broker_url)
        app.AsyncResult("rd-garbage-result").get(timeout=1)
    # a result stored over a notification key fleet did not write still commits
    broker.commit("c#1", Batch(results=[StoredResult("result:rd-note", '{"state": "X"}')]))
    assert broker.get_value("result:rd-note") == '{"state": "X"}'


def test_malformed_sqlite_rows_never_fail_a_call(broker, broker_url):
    if not broker_url.startswith("sqlite"):
        pytest.skip("SQLite rows")
    expected = plant_sqlite(str(path_from_url(broker_url)), QUEUE, time.time())
    report = broker.recover(60.0)  # dead#2's heartbeat is 'abc': dead
    assert report.dead_consumers == ["dead#2"] and report.requeued == 1
    deliveries = {d.id: d for d in reserve_all(broker)}
    # what is left: rows with a readable shape, for the codec (a node) to judge
    assert sorted(deliveries) == ["sq-body-number", "sq-held-by-dead", "sq-not-json"]
    text = reasons(broker)
    for words in expected:
        assert words in text, words
    assert broker.queue_stats() and [c.consumer_id for c in broker.consumers()] == ["c#1"]
    letters = broker.dead_letters(10_000)
    assert all(isinstance(letter.body, str) for letter in letters)
    with pytest.raises(BrokerDataError, match="cannot be read"):
        from fleet import Fleet

        app = Fleet("t", broker=broker_url)
        app.AsyncResult("sq-garbage-result").get(timeout=1)


def test_a_broker_with_malformed_entries_still_moves_good_messages(broker, broker_url):
    if broker_url.startswith("redis"):
        plant_redis(broker.client, "fleet", QUEUE, time.time())
        plant_redis_wrong_types(broker.client, "fleet", "other")
    else:
        plant_sqlite(str(path_from_url(broker_url)), QUEUE, time.time())
    good = [codec.build("testapp.add", [i, i], {}, queue=queue) for i in range(5)
            for queue in (QUEUE, "other")]
    broker.put([Outgoing(m.id, m.queue, m.encode()) for m in good])
    broker.recover(60.0)
    ids = {d.id for d in reserve_all(broker, queues=(QUEUE, "other"))}
    assert {m.id for m in good} <= ids
    broker.commit("c#1", Batch(acks=list(ids)))
    assert not reserve_all(broker, queues=(QUEUE, "other"))
    assert body()  # (the helper builds valid bodies)
