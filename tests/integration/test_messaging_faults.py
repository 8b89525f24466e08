"""The broker closes every connection, several times, during a stream of 10,000
events: the relay and the consumer reconnect, nothing is lost, nothing is
applied twice. Runs in a RabbitMQ vhost of its own."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal

import pytest

from ordersys import InfrastructureUnavailable, RequestTimeout
from ordersys.messaging.publisher import ConfirmedPublisher
from ordersys.messaging.relay import Relay
from ordersys.settings import Settings
from ordersys.transport import Envelope
from ordersys.transport.rabbitmq import KombuTransport
from tests.contracts.transport import eventually
from tests.integration.test_messaging_rabbitmq import INTEGRATION_EVENTS, Ledger
from tests.unit.accounts import Account, Bank

EVENTS = 10_000


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True)


@pytest.fixture
def vhost() -> Iterator[str]:
    name = f"ordersys-test-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    yield name
    rabbitmqctl("delete_vhost", name)


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
