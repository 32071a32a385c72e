"""What the Redis transport promises beyond the shared contract: errors an operator can act
on, URLs, key prefixes, round trips on the hot path, surviving lost replies and flushed
scripts without stranding messages, and judging time by the server's clock.

`transport` runs with the default clock, as in production (the scripts read the server's
TIME); `clocked` with a test's `manual_clock`, for tests that need a heartbeat to expire."""

from __future__ import annotations

import logging
import os
import select
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest
import redis

from fleet.engine.transport import open_transport, redis_admin
from fleet.engine.transport import redis as redis_transport
from fleet.engine.transport.base import Batch, ConsumerInfo, Outgoing, StoredResult
from fleet.engine.transport.redis import RedisTransport
from fleet.exceptions import BrokerUnavailable
from fleet.operator_errors import ConfigError


@pytest.fixture
def transport(redis_url: str) -> Iterator[RedisTransport]:
    opened = open_transport(redis_url)
    yield opened
    opened.close()


@pytest.fixture
def clocked(redis_url: str, manual_clock) -> Iterator[RedisTransport]:
    """A transport that reads the time from `manual_clock` instead of the server."""
    opened = open_transport(redis_url, clock=manual_clock)
    yield opened
    opened.close()


@pytest.fixture
def raw(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url, decode_responses=True)
    yield client
    client.close()


def message(queue: str = "q", **fields) -> Outgoing:
    msg_id = uuid.uuid4().hex
    return Outgoing(id=msg_id, queue=queue, body=f'"{msg_id}"', **fields)


def consumer(consumer_id: str) -> ConsumerInfo:
    return ConsumerInfo(consumer_id, consumer_id.split("#", 1)[0], ["q"], os.getpid(), "h")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_open_transport_serves_every_redis_scheme():
    assert RedisTransport.schemes == ("redis", "rediss", "unix")
    assert isinstance(open_transport("rediss://127.0.0.1:1/0"), RedisTransport)


def test_ping_of_an_unreachable_server_is_broker_unavailable_with_the_url_masked():
    url = f"redis://:hunter2@127.0.0.1:{closed_port()}/0"
    transport = open_transport(url, {"connect_timeout": 1.0})
    started = time.monotonic()

    with pytest.raises(BrokerUnavailable) as caught:
        transport.ping()

    text = caught.value.one_line()
    assert "redis://:********@127.0.0.1" in text
    assert "hunter2" not in text
    assert "redis-server is running" in text
    assert caught.value.exit_code == 75
    assert time.monotonic() - started < 3  # no silent retries with backoff


def test_ping_with_a_wrong_password_is_broker_unavailable(redis_server):
    url = f"redis://nobody:wrong-secret@127.0.0.1:{redis_server.port}/0"

    with pytest.raises(BrokerUnavailable) as caught:
        open_transport(url).ping()

    assert "wrong-secret" not in caught.value.one_line()
    assert "WRONGPASS" in caught.value.one_line() or "invalid" in caught.value.one_line()


def test_unix_socket_url_works(redis_server, redis_url):
    transport = open_transport(redis_server.unix_url)
    sent = message()

    transport.ping()
    transport.put([sent])

    assert [d.id for d in transport.reserve("c#1", ["q"], limit=5)] == [sent.id]


def test_prefixes_keep_two_fleets_apart_in_one_database(redis_url, raw):
    blue = open_transport(redis_url, {"prefix": "blue"})
    green = open_transport(redis_url, {"prefix": "green"})

    blue.put([message()])
    blue.set_values([StoredResult("k", "v")])

    assert green.reserve("c#1", ["q"], limit=5) == []
    assert green.get_value("k") is None
    assert green.queue_stats() == []
    assert raw.keys("*") and all(key.startswith("blue:") for key in raw.keys("*"))


def test_reserve_that_finds_nothing_does_not_register_the_consumer(transport):
    assert transport.reserve("looker#1", ["q"], limit=5) == []

    assert transport.consumers() == []


def test_extra_options_reach_the_redis_client(redis_url):
    transport = open_transport(redis_url, {"client_name": "fleet-test", "prefix": "p"})

    assert transport.client.client_getname() == "fleet-test"


def test_unknown_client_option_is_a_config_error_at_open(redis_url):
    with pytest.raises(ConfigError) as caught:
        open_transport(redis_url, {"socket_keepalve": True})

    assert "socket_keepalve" in caught.value.one_line()
    assert caught.value.exit_code == 78


def test_acked_messages_leave_nothing_behind(transport, raw):
    transport.register(consumer("w#1"))
    transport.put([message(), message(priority=3), message(eta=time.time() - 1)])
    got = transport.reserve("w#1", ["q"], limit=10)
    transport.requeue("w#1", [got[0].id])
    assert [d.id for d in transport.reserve("w#1", ["q"], limit=10)] == [got[0].id]

    transport.ack("w#1", [d.id for d in got])
    transport.unregister("w#1")

    assert sorted(raw.keys("*")) == ["fleet:queues", "fleet:seq"]


def test_reserve_is_one_round_trip_and_commit_is_one(transport, monkeypatch):
    transport.put([message() for _ in range(20)])
    transport.reserve("w#1", ["q"], limit=1)  # warm up: connect and load the scripts
    sends = []
    original = redis.connection.Connection.send_packed_command

    def counting(self, command, check_health=True):
        sends.append(command)
        return original(self, command, check_health)

    monkeypatch.setattr(redis.connection.Connection, "send_packed_command", counting)

    got = transport.reserve("w#1", ["q", "other"], limit=8, horizon=5)
    assert len(sends) == 1
    transport.commit("w#1", Batch(results=[StoredResult(f"r:{d.id}", "1", 60) for d in got],
                                  puts=[message("next")], started=[got[0].id],
                                  acks=[d.id for d in got[:4]], requeues=[d.id for d in got[4:]]))
    assert len(sends) == 2


def test_put_of_many_messages_keeps_their_order_across_chunks(transport, monkeypatch):
    monkeypatch.setattr(redis_transport, "PUT_CHUNK", 3)
    sent = [message() for _ in range(10)]

    transport.put(sent)

    assert [d.id for d in transport.reserve("c#1", ["q"], limit=20)] == [m.id for m in sent]


def test_out_of_range_priorities_are_clamped(transport):
    """base.py says priorities are clamped to 0-9; this transport does it itself, as its
    scores would otherwise leave the priority bands."""
    over = message(priority=42)
    under = message(priority=-3)
    transport.put([under, over])

    got = transport.reserve("c#1", ["q"], limit=10)

    assert [(d.id, d.priority) for d in got] == [(over.id, 9), (under.id, 0)]


def test_queue_names_may_hold_separators(transport):
    odd = "jobs|high:eu"
    sent = message(odd)
    transport.register(consumer("w#1"))
    transport.put([sent])
    [got] = transport.reserve("w#1", [odd], limit=5)

    transport.requeue("w#1", [got.id])
    [again] = transport.reserve("w#1", [odd], limit=5)

    assert (again.id, again.queue, again.redelivered) == (sent.id, odd, True)
    assert {s.name: s.reserved for s in transport.queue_stats()}[odd] == 1


def test_scripts_flushed_from_the_server_are_loaded_again(transport, raw):
    transport.put([message()])
    raw.script_flush()
    transport.put([message()])
    raw.script_flush()
    got = transport.reserve("w#1", ["q"], limit=5)
    raw.script_flush()

    transport.commit("w#1", Batch(results=[StoredResult("r", "1")], acks=[d.id for d in got]))

    assert len(got) == 2
    assert transport.get_value("r") == "1"
    assert transport.reserve("w#1", ["q"], limit=5) == []


def test_reserve_whose_reply_was_lost_is_rolled_back_by_the_next_reserve(transport, monkeypatch):
    sent = [message(), message()]
    transport.put(sent)
    transport.register(consumer("w#1"))
    client = transport.client
    original = client.evalsha

    def reply_lost(*args):
        original(*args)  # the server ran it...
        raise redis.exceptions.ConnectionError("Connection reset by peer")  # ...we never knew

    monkeypatch.setattr(client, "evalsha", reply_lost)
    with pytest.raises(redis.exceptions.ConnectionError):
        transport.reserve("w#1", ["q"], limit=5)
    monkeypatch.setattr(client, "evalsha", original)

    got = transport.reserve("w#1", ["q"], limit=5)

    assert [(d.id, d.redelivered) for d in got] == [(m.id, False) for m in sent]


def test_reservations_of_a_consumer_that_never_registered_are_recovered(clocked,
                                                                         manual_clock):
    sent = message()
    clocked.put([sent])
    clocked.reserve("ghost#1", ["q"], limit=5)
    manual_clock.advance(11)

    report = clocked.recover(timeout=10)

    assert report.dead_consumers == ["ghost#1"]
    assert [d.id for d in clocked.reserve("c#2", ["q"], limit=5)] == [sent.id]


def test_recover_handles_more_dead_consumers_than_one_script_call_takes(clocked, manual_clock,
                                                                        monkeypatch):
    monkeypatch.setattr(redis_transport, "RECOVER_CHUNK", 2)
    clocked.put([message() for _ in range(5)])
    for number in range(5):
        clocked.register(consumer(f"dead#{number}"))
        clocked.reserve(f"dead#{number}", ["q"], limit=1)
    manual_clock.advance(11)

    report = clocked.recover(timeout=10)

    assert len(report.dead_consumers) == 5
    assert report.requeued == 5


def test_purge_deletes_in_chunks_with_their_bodies(transport, raw, monkeypatch):
    monkeypatch.setattr(redis_admin, "PURGE_CHUNK", 3)
    transport.put([message() for _ in range(7)] + [message(eta=time.time() + 60)
                                                   for _ in range(4)])

    assert transport.purge(["q"]) == 11
    assert raw.hlen("fleet:msg") == 0


def test_heartbeat_of_a_consumer_declared_dead_registers_it_again(clocked, manual_clock,
                                                                   caplog):
    clocked.register(consumer("paused#1"))
    manual_clock.advance(11)
    clocked.recover(timeout=10)

    with caplog.at_level(logging.WARNING, logger="fleet.engine.transport.redis"):
        clocked.heartbeat(consumer("paused#1"))

    assert [c.consumer_id for c in clocked.consumers()] == ["paused#1"]
    assert "paused#1 was not registered" in caplog.text


def test_wakeup_is_published_only_when_a_queue_goes_from_empty_to_non_empty(transport):
    subscription = transport.subscribe([], wake_queues=["q"])
    try:
        transport.put([message()])
        assert select.select([subscription.fileno()], [], [], 5)[0]
        assert subscription.poll() == ([], True)

        transport.put([message()])
        assert select.select([subscription.fileno()], [], [], 0.2)[0] == []
        assert subscription.poll() == ([], False)
    finally:
        subscription.close()


def test_subscription_receives_what_is_published_right_after_subscribe(transport):
    subscription = transport.subscribe(["control"])
    try:
        transport.publish("control", "first")

        assert select.select([subscription.fileno()], [], [], 5)[0]
        assert subscription.poll() == ([("control", "first")], False)
    finally:
        subscription.close()


def test_subscription_without_channels_has_nothing_to_wait_on(transport):
    subscription = transport.subscribe([])

    assert subscription.fileno() is None
    assert subscription.poll() == ([], False)
    assert subscription.poll_interval == 1.0
    subscription.close()


def start_server(port: int, workdir) -> subprocess.Popen:
    process = subprocess.Popen(
        [shutil.which("redis-server"), "--port", str(port), "--bind", "127.0.0.1",
         "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    client = redis.Redis(port=port, socket_connect_timeout=0.2)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            client.ping()
            return process
        except redis.exceptions.ConnectionError:
            time.sleep(0.05)
    process.kill()
    pytest.fail("redis-server did not start")


def test_transport_and_subscription_work_again_after_the_server_restarts(redis_server,
                                                                          tmp_path):
    """Runs its own server (`redis_server` only makes it skip, or fail on CI, without one)."""
    port = closed_port()
    server = start_server(port, tmp_path)
    try:
        transport = open_transport(f"redis://127.0.0.1:{port}/0")
        transport.put([message()])
        subscription = transport.subscribe(["control"], wake_queues=["q"])
        server.kill()
        server.wait()

        with pytest.raises(BrokerUnavailable):
            transport.ping()
        with pytest.raises(redis.exceptions.ConnectionError):
            subscription.poll()

        server = start_server(port, tmp_path)  # empty, and without our scripts
        sent = message()
        transport.put([sent])
        assert [d.id for d in transport.reserve("c#1", ["q"], limit=5)] == [sent.id]
        subscription.poll()  # reconnects and subscribes again
        transport.publish("control", "back")
        assert select.select([subscription.fileno()], [], [], 5)[0]
        assert subscription.poll() == ([("control", "back")], False)
        subscription.close()
    finally:
        server.kill()
        server.wait()


def test_submit_works_after_scripts_were_flushed_from_the_server(transport, raw):
    from fleet.engine.transport.base import ReserveRequest

    transport.put([message(), message()])
    got = transport.reserve("w#1", ["q"], limit=1)
    raw.script_flush()
    pending = transport.submit("w#1", Batch(acks=[got[0].id]), ReserveRequest(["q"], 5))
    assert select.select([pending.fileno()], [], [], 5)[0]
    again = pending.result()
    assert len(again) == 1 and again[0].id != got[0].id


def test_submit_whose_reply_was_lost_is_rolled_back_by_the_next_reserve(transport):
    from fleet.engine.transport.base import ReserveRequest

    sent = [message(), message()]
    transport.put(sent)
    transport.register(consumer("w#1"))
    pending = transport.submit("w#1", Batch(), ReserveRequest(["q"], 5))
    original = pending.connection.read_reply

    def reply_lost():
        original()  # the server ran it...
        raise redis.exceptions.ConnectionError("Connection reset by peer")  # ...we never knew

    pending.connection.read_reply = reply_lost
    with pytest.raises(transport.transient_errors):
        pending.result()
    del pending.connection.read_reply
    got = transport.reserve("w#1", ["q"], limit=5)
    assert [(d.id, d.redelivered) for d in got] == [(m.id, False) for m in sent]


def test_wait_value_blocks_for_less_than_a_short_socket_timeout(redis_url):
    """BLPOP must never outlast the client's socket timeout (a TimeoutError otherwise)."""
    import time

    from fleet.engine.transport.base import StoredResult

    for socket_timeout in (0.2, 0.6):  # too short to block at all; long enough
        waiting = open_transport(redis_url, {"socket_timeout": socket_timeout})
        try:
            started = time.monotonic()
            assert waiting.wait_value("never-stored", 1.0) is None
            assert time.monotonic() - started >= 0.9
            waiting.set_values([StoredResult("stored", "v")])
            assert waiting.wait_value("stored", 1.0) == "v"
        finally:
            waiting.close()


def test_a_stored_value_leaves_one_short_lived_notification(transport, raw):
    from fleet.engine.transport.base import StoredResult

    transport.set_values([StoredResult("r", "first", ttl=60)])
    transport.commit("c#1", Batch(results=[StoredResult("r", "second", ttl=60)]))

    assert raw.lrange("fleet:n:r", 0, -1) == ["second"]
    assert 0 < raw.pttl("fleet:n:r") <= 10_000
    transport.delete_values(["r"])
    assert not raw.exists("fleet:n:r")


# -- time: the server's clock by default ------------------------------------------------------


def server_time(raw: redis.Redis) -> float:
    seconds, micros = raw.time()
    return seconds + micros / 1e6


def test_by_default_heartbeats_and_recovery_follow_the_servers_clock_not_the_clients(
        transport, raw, monkeypatch):
    """Hosts whose clocks disagree still agree: with the default clock the scripts read the
    server's TIME, so a client whose clock is an hour off changes nothing."""
    now = server_time(raw)
    raw.zadd("fleet:consumers", {"stale#1": now - 120})  # silent for two minutes
    monkeypatch.setattr(time, "time", lambda: now - 3600)  # this host is an hour slow

    transport.register(consumer("w#1"))
    beats = dict(raw.zrange("fleet:consumers", 0, -1, withscores=True))
    report = transport.recover(timeout=60)

    assert abs(beats["w#1"] - now) < 5
    assert report.dead_consumers == ["stale#1"]
    assert [c.consumer_id for c in transport.consumers()] == ["w#1"]


def test_by_default_a_lease_expires_by_the_servers_clock_and_its_key_with_it(
        transport, raw, monkeypatch):
    now = server_time(raw)
    monkeypatch.setattr(time, "time", lambda: now - 3600)  # by this host, a lease set
    raw.set("fleet:lease:beat", f"{now - 1!r}|node-a")    # now would be valid for an hour

    assert transport.acquire_lease("beat", "node-b", ttl=30) is True
    assert transport.acquire_lease("beat", "node-a", ttl=30) is False
    expires, owner = raw.get("fleet:lease:beat").split("|")
    assert owner == "node-b" and abs(float(expires) - (now + 30)) < 5
    assert 25_000 < raw.pttl("fleet:lease:beat") <= 30_000  # nothing lingers if never released


def test_a_lease_written_by_an_older_fleet_is_held_until_its_key_expires(transport, raw):
    """Older fleets stored only the owner and let PX expire the lease."""
    raw.set("fleet:lease:beat", "node-old", px=30_000)

    assert transport.acquire_lease("beat", "node-new", ttl=30) is False
    raw.delete("fleet:lease:beat")  # as PX would
    assert transport.acquire_lease("beat", "node-new", ttl=30) is True


def test_with_a_test_clock_the_scripts_judge_by_it_and_leases_need_no_key_expiry(
        clocked, raw, manual_clock):
    clocked.register(consumer("w#1"))
    assert clocked.acquire_lease("beat", "node-a", ttl=30) is True

    assert raw.zscore("fleet:consumers", "w#1") == manual_clock.time()
    assert raw.pttl("fleet:lease:beat") == -1  # the clock, not the server, ends it
    manual_clock.advance(30)
    assert clocked.acquire_lease("beat", "node-b", ttl=30) is True
