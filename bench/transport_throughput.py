"""Rough transport throughput: put N messages, then reserve and ack them in small batches.

    python bench/transport_throughput.py redis://127.0.0.1:6390/0 [--messages 20000]

One process, one consumer: the worker's hot path (one reserve and one commit per
iteration). Reports the best of --rounds runs, as other load on the machine only ever
slows a run down. Not part of the test suite; numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import time
import uuid

from fleet.engine.transport import open_transport
from fleet.engine.transport.base import Batch, Outgoing, Transport


def one_round(transport: Transport, args: argparse.Namespace) -> tuple[float, float]:
    """Seconds to put every message, and to reserve and ack them all."""
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    body = '{"task": "bench.noop", "args": [1, 2], "kwargs": {}}'
    messages = [Outgoing(uuid.uuid4().hex, queue, body) for _ in range(args.messages)]

    started = time.perf_counter()
    for start in range(0, len(messages), args.put_chunk):
        transport.put(messages[start:start + args.put_chunk])
    put_seconds = time.perf_counter() - started

    consumer = f"bench#{uuid.uuid4().hex[:6]}"
    done = 0
    started = time.perf_counter()
    while got := transport.reserve(consumer, [queue], limit=args.batch):
        transport.commit(consumer, Batch(acks=[delivery.id for delivery in got]))
        done += len(got)
    consume_seconds = time.perf_counter() - started
    transport.unregister(consumer)
    assert done == args.messages, f"consumed {done} of {args.messages}"
    return put_seconds, consume_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--batch", type=int, default=8, help="reserve limit")
    parser.add_argument("--put-chunk", type=int, default=1000, help="messages per put call")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    transport = open_transport(args.url)
    transport.ping()
    rounds = [one_round(transport, args) for _ in range(args.rounds)]
    put_seconds = min(put for put, _ in rounds)
    consume_seconds = min(consume for _, consume in rounds)
    count = args.messages
    print(f"{transport.describe()}: best of {args.rounds}: put {count} in {put_seconds:.2f}s "
          f"({count / put_seconds:,.0f} msg/s); reserved+acked them in batches of "
          f"{args.batch} in {consume_seconds:.2f}s ({count / consume_seconds:,.0f} msg/s)")


if __name__ == "__main__":
    main()
