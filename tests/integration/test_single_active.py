"""Single-active workers, each replica its own process, on the real PostgreSQL
and RabbitMQ: of two replicas of a relay or of a projection runner, one works
and the other waits for its lease; when the active one is killed with -9 the
other takes over within 10 s, and nothing is lost or applied twice."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from psycopg import sql

from ordersys.observability.metrics import service_registry
from ordersys.persistence.database import connect
from ordersys.projections import ProjectionRunner, ReadModel
from ordersys.readmodels import PostgresReadModelStore
from ordersys.settings import Settings
from ordersys.testing import eventually
from tests.integration.projection_worker import AppliedCounts
from tests.integration.test_messaging_rabbitmq import URL, open_accounts, prefix
from tests.integration.test_projections_postgres import (
    open_accounts as open_accounts_with_deposits,
)
from tests.unit.accounts import Account, Bank
from tests.unit.balances import Balances

__all__ = ["prefix"]  # the fixture, shared with the messaging tests

ROOT = Path(__file__).resolve().parents[2]
TAKEOVER_SECONDS = 10.0


class Replica:
    """A worker process, and when it said it became active."""

    def __init__(self, module: str, *args: str) -> None:
        command = [sys.executable, "-m", module, *args, "replica"]
        self.process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.PIPE, text=True
        )
        self.active_at: float | None = None
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            if line.strip() == "active":
                self.active_at = time.monotonic()

    def kill(self) -> float:
        """Kill it with -9; when it died."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait()
        return time.monotonic()


@pytest.fixture
def replicas() -> Iterator[list[Replica]]:
    """The replicas a test starts, killed afterwards."""
    started: list[Replica] = []
    yield started
    for replica in started:
        if replica.process.poll() is None:
            replica.kill()


def active_and_standby(replicas: list[Replica]) -> tuple[Replica, Replica]:
    assert eventually(lambda: any(r.active_at for r in replicas), within=30)
    [active] = [r for r in replicas if r.active_at is not None]
    [standby] = [r for r in replicas if r is not active]
    return active, standby


def taken_over(standby: Replica, killed_at: float) -> float:
    """Seconds from the kill until ``standby`` held the lease."""
    assert eventually(lambda: standby.active_at is not None, within=TAKEOVER_SECONDS)
    assert standby.active_at is not None
    return standby.active_at - killed_at


def applied_by(settings: Settings) -> list[tuple[Any, ...]]:
    """Per process that applied events: (pid, documents, first and last batch
    position, how often each event was applied)."""
    query = sql.SQL(
        "SELECT (doc->>'by')::int, count(*), min(position), max(position), "
        "array_agg(DISTINCT (doc->>'times')::int) FROM {}.{} GROUP BY 1 ORDER BY 3"
    ).format(
        sql.Identifier(settings.postgres_schema), sql.Identifier(AppliedCounts.name)
    )
    with connect(settings) as conn:
        return [tuple(row) for row in conn.execute(query).fetchall()]


def test_one_replica_applies_a_projection_and_another_takes_over_when_it_is_killed(
    pg_settings: Settings, replicas: list[Replica]
) -> None:
    # Given 1,000 events, and two replicas of a runner of a slow projection
    bank = Bank(pg_settings)
    open_accounts_with_deposits(bank, 200, deposits=4)
    for _ in range(2):
        replicas.append(
            Replica("tests.integration.projection_worker", pg_settings.postgres_schema)
        )
    store = PostgresReadModelStore(pg_settings, AppliedCounts.name)
    view = store.view(store.live_generation())

    def applied() -> int:
        return view.max_tracking_id(bank.name) or 0

    # When one holds the lease and has applied a part of them, it is killed
    active, standby = active_and_standby(replicas)
    assert eventually(lambda: applied() >= 300, within=60)
    assert standby.active_at is None
    killed_at = active.kill()
    at_kill = applied()

    # Then the other takes over within 10 s, and applies the rest
    seconds = taken_over(standby, killed_at)
    print(f"takeover {seconds:.2f} s after the kill, at position {at_kill}")
    assert eventually(lambda: applied() == bank.head_position() == 1000, within=60)

    # And every event was applied once: by the killed replica up to some batch,
    # by the other after it, never by both at once
    (first, *_), (second, *_) = rows = applied_by(pg_settings)
    print("applied by (pid, documents, first, last, times):", rows)
    assert [first, second] == [active.process.pid, standby.process.pid]
    assert sum(row[1] for row in rows) == 1000
    assert rows[0][3] < rows[1][2]
    assert [row[4] for row in rows] == [[1], [1]]
    store.close()


def open_accounts_until(bank: Bank, stop: threading.Event) -> None:
    """A stream of events: an account every 10 ms until ``stop``."""
    n = 0
    while not stop.wait(0.01):
        open_accounts(bank, 1, owner=f"later{n}-")
        n += 1


def test_a_replica_waiting_for_the_lease_answers_reads_that_wait_for_a_position(
    pg_settings: Settings,
) -> None:
    # Given two runners of a projection, each with leases of its own (as in two
    # replicas), the first of them holding the lease
    first = ProjectionRunner(Balances, Bank(pg_settings))
    second = ProjectionRunner(Balances, Bank(pg_settings))
    first.start()
    assert eventually(lambda: bool(first.leases and first.leases.holding))
    second.start()
    registries = [service_registry([], [runner]) for runner in (first, second)]

    def sample(registry: int, name: str) -> float | None:
        labels = {"worker": "projection balances"}
        return registries[registry].get_sample_value(name, labels)

    # When an account is opened
    bank = second.application
    account = Account("ann", Decimal(0))
    written = bank.write(account)
    assert written.position is not None

    # Then the second's read waits until the first has applied it, and reads it
    second.caught_up(written.position, timeout=10)
    doc = ReadModel(second.store).get("accounts", str(account.id))
    assert doc == {"owner": "ann", "balance": "0", "open": True}
    assert second.milestones.time_of(written.position) is None  # it applied nothing
    assert first.milestones.time_of(written.position) is not None
    held = [sample(n, "ordersys_leases_held") for n in (0, 1)]
    assert held == [1, 0]

    # And when the first stops, the second takes the lease over, and counts it
    first.stop()
    assert eventually(lambda: bool(second.leases and second.leases.holding))
    assert sample(1, "ordersys_takeovers_total") == 1
    second.stop()


class Received:
    """Every message the events exchange routes, in the order it arrives."""

    def __init__(self, prefix: str) -> None:
        self.connection = Connection(URL)
        exchange = Exchange(f"{prefix}.events", "topic", durable=True)
        self.queue = Queue(f"{prefix}.received", exchange, routing_key="bank.*")
        self.queue(self.connection.default_channel).declare()
        self.ids: list[str] = []
        self.aggregates: list[str] = []

    def drain(self) -> int:
        """Take what has arrived; how many messages have, in all."""
        channel = self.connection.default_channel
        while (message := self.queue(channel).get(no_ack=True)) is not None:
            self._take(message)
        return len(self.ids)

    def _take(self, message: Any) -> None:
        self.ids.append(message.headers["message_id"])
        self.aggregates.append(message.payload["body"]["originator_id"])

    def distinct(self) -> int:
        self.drain()
        return len(set(self.ids))


def test_one_replica_relays_and_another_takes_over_when_it_is_killed(
    pg_settings: Settings, prefix: str, replicas: list[Replica]
) -> None:
    # Given 200 events, two replicas of the bank's relay, and a queue that
    # receives everything they publish
    bank = Bank(pg_settings)
    received = Received(prefix)
    open_accounts(bank, 100)
    for _ in range(2):
        replicas.append(
            Replica(
                "tests.integration.relay_worker", pg_settings.postgres_schema, prefix
            )
        )

    # When one holds the lease, it publishes every event, once: the other waits
    active, standby = active_and_standby(replicas)
    assert eventually(lambda: received.drain() >= 200, within=30)
    time.sleep(2.5)  # the standby claims every second meanwhile
    assert received.drain() == received.distinct() == 200
    assert standby.active_at is None

    # And when it is killed while events are being written
    stop = threading.Event()
    writer = threading.Thread(target=open_accounts_until, args=(bank, stop))
    writer.start()
    assert eventually(lambda: received.drain() >= 400, within=30)
    killed_at = active.kill()
    at_kill = received.drain()

    # Then the other takes over within 10 s and publishes the rest of the stream
    seconds = taken_over(standby, killed_at)
    print(f"takeover {seconds:.2f} s after the kill, {at_kill} messages by then")
    assert eventually(lambda: received.distinct() >= at_kill + 200, within=30)
    stop.set()
    writer.join()
    assert eventually(lambda: received.distinct() == bank.head_position(), within=60)

    # And every event was published at least once, each aggregate's in order
    # (taking each message's first arrival: consumers deduplicate the others)
    first_arrivals: dict[str, int] = {}
    for message_id in received.ids:
        first_arrivals.setdefault(message_id, len(first_arrivals))
    positions = {int(m.split(":")[1]) for m in first_arrivals}
    assert positions == set(range(1, bank.head_position() + 1))
    by_aggregate: dict[str, list[int]] = {}
    for message_id, aggregate in zip(received.ids, received.aggregates, strict=True):
        if first_arrivals.pop(message_id, None) is not None:
            by_aggregate.setdefault(aggregate, []).append(int(message_id.split(":")[1]))
    assert all(p == sorted(p) for p in by_aggregate.values())
    repeated = len(received.ids) - bank.head_position()
    print(f"{bank.head_position()} events, {repeated} published again on takeover")
    received.connection.close()
