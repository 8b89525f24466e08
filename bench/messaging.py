"""Messaging throughput against the local RabbitMQ and PostgreSQL, in one run.

    python -m bench messaging [--events N] [--calls N]

Every publisher delivers into the same consumer queue (quorum). Prints: raw kombu
publishing without confirms (the baseline); kombu waiting for each confirm; the
relay's publishing with confirms in batches (target: at least 85% of the baseline); the
consumer's apply rate with its dedupe record; RPC round trips per second with
p50/p99 latency at 1 and 16 concurrent callers.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
import uuid
from decimal import Decimal

from kombu.connection import Connection
from kombu.entity import Exchange
from kombu.messaging import Producer

from ordersys import Aggregate, Application, event, load_settings
from ordersys.messaging.consumer import EventConsumer, queues_for
from ordersys.messaging.publisher import ConfirmedPublisher
from ordersys.messaging.relay import Relay
from ordersys.persistence.database import connect
from ordersys.readmodels.records import Records
from ordersys.transport import Envelope
from ordersys.transport.rabbitmq import KombuTransport

URL = "amqp://guest:guest@127.0.0.1:5672//"


class Meter(Aggregate):
    @event("Read")
    def __init__(self, reading: Decimal) -> None:
        self.reading = reading


class Meters(Application):
    aggregate_types = (Meter,)


def declare_sink(prefix: str) -> None:
    """The consumer's queue (quorum, with its DLQ) bound to the events exchange:
    every publisher measured here delivers into it."""
    with Connection(URL) as connection:
        Exchange(f"{prefix}.events", type="topic", durable=True)(
            connection.default_channel
        ).declare()
        for queue in queues_for(prefix, "sink", ["meters.*"], max_attempts=5):
            queue(connection.default_channel).declare()


def purge_sink(prefix: str) -> None:
    with Connection(URL) as connection:
        connection.default_channel.queue_purge(f"{prefix}.sink")


def raw_publish_rate(prefix: str, count: int, *, confirm_each: bool = False) -> float:
    """kombu's own publishing; with ``confirm_each`` it waits for every confirm."""
    body = {"message_type": "Read", "body": {"reading": "1.5", "originator_id": "x"}}
    options = {"confirm_publish": True} if confirm_each else {}
    with Connection(URL, transport_options=options) as connection:
        producer = Producer(connection.default_channel)
        started = time.perf_counter()
        for n in range(count):
            producer.publish(
                body,
                exchange=f"{prefix}.events",
                routing_key="meters.Read",
                serializer="json",
                delivery_mode=2,
                message_id=str(n),
            )
        elapsed = time.perf_counter() - started
    return count / elapsed


def relay_rate(prefix: str, count: int) -> tuple[float, Meters]:
    meters = Meters(load_settings({"persistence": "memory"}))
    for n in range(count):
        meters.save(Meter(Decimal(n)))
    publisher = ConfirmedPublisher(URL, f"{prefix}.events")
    relay = Relay(meters, "meters", publisher, integration_events=[Meter.Read])
    started = time.perf_counter()
    while relay.run_once():
        pass
    elapsed = time.perf_counter() - started
    publisher.close()
    return count / elapsed, meters


def consumer_rate(prefix: str, count: int) -> float:
    schema = f"bench_{uuid.uuid4().hex[:8]}"
    settings = load_settings(
        {"postgres_dbname": "ordersys_test", "postgres_schema": schema}
    )
    applied = threading.Event()
    seen = 0

    def apply(envelope: Envelope, records: Records) -> None:
        nonlocal seen
        records.put("readings", envelope.headers["message_id"], envelope.body)
        seen += 1
        if seen == count:
            applied.set()

    consumer = EventConsumer(
        settings,
        "sink",
        {"Read": apply},
        patterns=["meters.*"],
        prefix=prefix,
        prefetch=200,
    )
    started = time.perf_counter()
    consumer.start()
    applied.wait(600)
    elapsed = time.perf_counter() - started
    consumer.stop()
    with connect(settings, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")
    return count / elapsed


def rpc_rates(prefix: str, calls: int, callers: int) -> tuple[float, float, float]:
    server, client = (
        KombuTransport(URL, prefix=prefix),
        KombuTransport(URL, prefix=prefix),
    )
    server.serve("echo", lambda e: e.body)
    client.call("echo", Envelope.new("echo", {}), timeout=5)
    latencies: list[float] = []
    lock = threading.Lock()

    def caller(n: int) -> None:
        mine = []
        for _ in range(n):
            started = time.perf_counter()
            client.call("echo", Envelope.new("echo", {"n": 1}), timeout=5)
            mine.append(time.perf_counter() - started)
        with lock:
            latencies.extend(mine)

    threads = [
        threading.Thread(target=caller, args=(calls // callers,))
        for _ in range(callers)
    ]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    client.close()
    server.close()
    latencies.sort()
    p99 = latencies[int(len(latencies) * 0.99) - 1]
    return len(latencies) / elapsed, statistics.median(latencies) * 1000, p99 * 1000


def cleanup(prefix: str) -> None:
    with Connection(URL) as connection:
        channel = connection.default_channel
        for queue in ("sink", "sink.dlq", "echo.commands"):
            channel.queue_delete(f"{prefix}.{queue}")
        for exchange in ("events", "commands", "dead-letters"):
            channel.exchange_delete(f"{prefix}.{exchange}")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench messaging")
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--calls", type=int, default=4_000)
    args = parser.parse_args(argv)
    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    try:
        declare_sink(prefix)
        # The broker's speed drifts with its state (quorum queue segments, memory):
        # alternate the two publishers over five rounds and compare medians.
        raws, relays = [], []
        for _ in range(5):
            raws.append(raw_publish_rate(prefix, args.events))
            purge_sink(prefix)
            relays.append(relay_rate(prefix, args.events)[0])
            purge_sink(prefix)
        raw, relayed = statistics.median(raws), statistics.median(relays)
        one_by_one = raw_publish_rate(prefix, args.events // 10, confirm_each=True)
        purge_sink(prefix)
        relay_rate(prefix, args.events)
        applied = consumer_rate(prefix, args.events)
        rpc = {n: rpc_rates(prefix, args.calls, n) for n in (1, 16)}
    finally:
        cleanup(prefix)
    print(f"{'measure (medians)':<44}{'rate/s':>10}")
    spread = f"   (5 rounds: {min(raws):,.0f} to {max(raws):,.0f})"
    print(f"{'raw kombu publish, unconfirmed (baseline)':<44}{raw:>10,.0f}{spread}")
    print(f"{'kombu publish, each confirm awaited':<44}{one_by_one:>10,.0f}")
    print(
        f"{'relay publish, confirms pipelined':<44}{relayed:>10,.0f}"
        f"   (5 rounds: {min(relays):,.0f} to {max(relays):,.0f}); "
        f"{relayed / raw:.0%} of baseline (target 85%)"
    )
    print(f"{'consumer apply with dedupe record':<44}{applied:>10,.0f}")
    for callers, (rate, p50, p99) in rpc.items():
        label = f"RPC round trips, {callers} caller{'s' if callers > 1 else ''}"
        print(f"{label:<44}{rate:>10,.0f}   p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    return 0
