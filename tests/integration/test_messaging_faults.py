"""The broker closes every connection, several times, during a stream of 10,000
events: the relay and the consumer reconnect, nothing is lost, nothing is
applied twice. Runs in a RabbitMQ vhost of its own. And PostgreSQL goes away
under a consumer and a relay: they wait for it, and dead-letter nothing."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal

import pytest
from eventsourcing.persistence import OperationalError

from ordersys import InfrastructureUnavailable, RequestTimeout
from ordersys.messaging.publisher import ConfirmedPublisher
from ordersys.messaging.relay import Relay
from ordersys.readmodels.records import Records
from ordersys.settings import Settings, load_settings
from ordersys.testing import eventually
from ordersys.transport import Envelope
from ordersys.transport.rabbitmq import KombuTransport
from tests.integration.test_messaging_rabbitmq import (
    INTEGRATION_EVENTS,
    URL,
    Ledger,
    open_accounts,
    prefix,
    queue_depth,
)
from tests.integration.test_transport_rabbitmq import rabbitmqctl, vhost
from tests.servers import PrivatePostgres
from tests.unit.accounts import Account, Bank

EVENTS = 10_000

__all__ = ["prefix", "vhost"]  # the fixtures, shared with the messaging tests


def test_closing_all_connections_mid_stream_loses_and_doubles_nothing(
    pg_settings: Settings, vhost: str
) -> None:
    url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    settings = pg_settings.model_copy(update={"rabbitmq_url": url})
    bank = Bank(settings)
    accounts = [Account(f"owner{n}", Decimal(0)) for n in range(EVENTS // 2)]
    for account in accounts:
        account.deposit(Decimal(1))
    for start in range(0, len(accounts), 500):
        bank.save(*accounts[start : start + 500])
    ledger = Ledger(settings, "ordersys")
    ledger.consumer.start()
    relay = Relay(
        bank,
        "bank",
        ConfirmedPublisher(url, "ordersys.events"),
        integration_events=INTEGRATION_EVENTS,
        batch_size=200,
    )
    closed = 0

    relay.start()
    for threshold in (1_000, 3_000, 5_000, 7_000):
        assert eventually(lambda t=threshold: len(ledger.rows()) >= t, within=60)
        rabbitmqctl("close_all_connections", "--vhost", vhost, "fault injection")
        closed += 1
    complete = eventually(lambda: len(ledger.rows()) >= EVENTS, within=120)
    settled = eventually(lambda: relay.position() == bank.head_position(), within=60)
    relay.stop()
    ledger.consumer.stop()

    rows = ledger.rows()
    print(f"events {EVENTS}, connections closed {closed} times, applied {len(rows)}")
    assert complete
    assert settled
    assert closed == 4
    assert len(rows) == EVENTS
    assert len({message_id for message_id, _ in rows}) == EVENTS


def test_rpc_servers_and_callers_recover_after_all_connections_are_closed(
    vhost: str,
) -> None:
    url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    server, client = KombuTransport(url), KombuTransport(url)
    server.serve("echo", lambda e: e.body["n"])
    assert client.call("echo", Envelope.new("echo", {"n": 0}), timeout=5) == 0

    rabbitmqctl("close_all_connections", "--vhost", vhost, "fault injection")

    def call(n: int) -> object:
        for _ in range(50):
            try:
                return client.call("echo", Envelope.new("echo", {"n": n}), timeout=2)
            except (InfrastructureUnavailable, RequestTimeout):
                time.sleep(0.1)  # the first call finds its connection gone
        return None

    results: dict[int, object] = {}
    threads = [
        threading.Thread(target=lambda n=n: results.__setitem__(n, call(n)))
        for n in range(1, 9)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    client.close()
    server.close()

    assert results == {n: n for n in range(1, 9)}


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    """A PostgreSQL cluster of this test's own, which it may stop."""
    server = PrivatePostgres()
    server.start()
    yield server
    server.close()


class SlowLedger(Ledger):
    """A ledger that takes a while per event, so that an outage finds it busy."""

    def record(self, envelope: Envelope, records: Records) -> None:
        time.sleep(0.02)
        super().record(envelope, records)


def reconnected(read: Callable[[], object]) -> bool:
    """Whether ``read`` works: each pooled connection that died with the
    server fails once, and is replaced."""
    try:
        read()
    except OperationalError:
        return False
    return True


def test_a_postgres_outage_under_a_consumer_and_a_relay_is_waited_out_and_dead_letters_nothing(  # noqa: E501
    postgres: PrivatePostgres, prefix: str
) -> None:
    settings = load_settings(
        {**postgres.settings, "postgres_dbname": "ordersys", "postgres_schema": "bank"}
    )
    bank = Bank(settings)
    ledger = SlowLedger(settings, prefix)
    relay = Relay(
        bank,
        "bank",
        ConfirmedPublisher(URL, f"{prefix}.events"),
        integration_events=INTEGRATION_EVENTS,
        batch_size=50,
    )
    consumer = ledger.consumer
    consumer.start()
    relay.start()
    open_accounts(bank, 200)  # 400 events, some 8 s of work for the consumer
    assert eventually(lambda: consumer.outcomes["applied"] >= 50, within=60)

    postgres.stop("immediate")
    assert eventually(lambda: "PostgreSQL" in consumer.outages.down, within=30)
    assert eventually(lambda: "PostgreSQL" in relay.outages.down, within=30)
    time.sleep(5)
    postgres.start()
    # The bank's pooled connections died with the server: each fails once.
    assert eventually(lambda: reconnected(bank.head_position), within=30)
    open_accounts(bank, 10, owner="after")  # the relay publishes these too

    assert eventually(lambda: consumer.outcomes["applied"] >= 420, within=120)
    assert eventually(lambda: reconnected(ledger.rows), within=30)
    rows = ledger.rows()
    relay.stop()
    consumer.stop()
    print(
        f"420 events, PostgreSQL stopped for 5 s under the consumer: "
        f"{len(rows)} applied, outcomes {dict(consumer.outcomes)}"
    )
    assert len(rows) == len({message_id for message_id, _ in rows}) == 420
    assert queue_depth(f"{prefix}.ledger.dlq") == 0
    assert consumer.outcomes["dead_lettered"] == consumer.outcomes["retried"] == 0
    assert consumer.outages.outages == {"PostgreSQL": 1}
    assert consumer.outages.down == relay.outages.down == {}


def test_a_request_taken_up_after_its_caller_gave_up_is_dropped_not_dead_lettered(
    prefix: str,
) -> None:
    server = KombuTransport(URL, prefix=prefix)
    caller = KombuTransport(URL, prefix=prefix)
    handled: list[int] = []

    def slow(envelope: Envelope) -> int:
        handled.append(envelope.body["n"])
        time.sleep(1.5)
        return int(envelope.body["n"])

    server.serve("slow", slow)
    first = threading.Thread(
        target=caller.call, args=("slow", Envelope.new("slow", {"n": 1}), 10)
    )
    first.start()
    assert eventually(lambda: handled == [1])

    with pytest.raises(RequestTimeout):  # queued behind the first, and given up on
        caller.call("slow", Envelope.new("slow", {"n": 2}), timeout=0.5)
    first.join()
    again = caller.call("slow", Envelope.new("slow", {"n": 3}), timeout=10)
    caller.close()
    server.close()

    assert again == 3
    assert handled == [1, 3]
    assert queue_depth(f"{prefix}.slow.commands.dlq") == 0
