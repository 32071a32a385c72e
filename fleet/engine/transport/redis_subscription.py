"""Broadcasts and wake-ups on the Redis transport: one pub/sub connection per subscription.

Channels (nothing is stored; see the layout at the top of `redis.py`):

    <p>:bc:<channel>   broadcasts (remote control, events)
    <p>:wake:<queue>   published by the scripts when a ready queue goes from empty to
                       non-empty, and for every put of a scheduled message
"""

from __future__ import annotations

import time
from collections.abc import Sequence

import redis

from fleet.engine.transport.base import Subscription
from fleet.engine.transport.redis_adapter import pubsub_fileno, pubsub_has_data


class RedisSubscription(Subscription):
    """Broadcasts and wakeups over one pub/sub connection.

    `fileno()` is that connection's socket; if the connection drops, `poll()` raises
    redis's ConnectionError and the next `poll()` reconnects and subscribes again, so
    callers should ask for `fileno()` afresh before each wait.
    """

    poll_interval = 1.0

    def __init__(self, client: redis.Redis, prefix: str, channels: Sequence[str],
                 wake_queues: Sequence[str], timeout: float):
        self._broadcast_prefix = f"{prefix}:bc:"
        self._wake = {f"{prefix}:wake:{queue}" for queue in wake_queues}
        names = [f"{self._broadcast_prefix}{channel}" for channel in channels]
        names = list(dict.fromkeys(names + sorted(self._wake)))
        self._pending: list[tuple[str, str]] = []
        self._woken = False
        self._pubsub = client.pubsub() if names else None
        if self._pubsub is not None:
            self._pubsub.subscribe(*names)
            self._await_confirmations(len(names), timeout)

    def _await_confirmations(self, expected: int, timeout: float) -> None:
        """Read the SUBSCRIBE replies, so nothing published after we return is missed."""
        confirmed = 0
        deadline = time.monotonic() + timeout
        while confirmed < expected:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.close()
                raise redis.exceptions.TimeoutError("no reply to SUBSCRIBE in time")
            message = self._pubsub.get_message(timeout=remaining)
            if message is None:
                continue
            if message["type"] == "subscribe":
                confirmed += 1
            else:
                self._handle(message)

    def _handle(self, message: dict) -> None:
        if message["type"] != "message":
            return
        channel = message["channel"]
        if channel in self._wake:
            self._woken = True
        elif channel.startswith(self._broadcast_prefix):
            self._pending.append((channel[len(self._broadcast_prefix):], message["data"]))

    def fileno(self) -> int | None:
        return pubsub_fileno(self._pubsub) if self._pubsub is not None else None

    def poll(self) -> tuple[list[tuple[str, str]], bool]:
        if self._pubsub is not None:
            self._drain()
        broadcasts, self._pending = self._pending, []
        woken, self._woken = self._woken, False
        return broadcasts, woken

    def _drain(self) -> None:
        """Read every message already received, without blocking."""
        pubsub = self._pubsub
        while True:
            message = pubsub.get_message(timeout=0)
            if message is not None:
                self._handle(message)
            elif not pubsub_has_data(pubsub):
                return

    def close(self) -> None:
        if self._pubsub is not None:
            self._pubsub.close()
            self._pubsub = None
