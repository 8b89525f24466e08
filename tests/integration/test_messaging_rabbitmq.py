"""Integration events on the real RabbitMQ and PostgreSQL: the relay publishes
with confirms, consumers apply each event once, poison goes to the DLQ."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from eventsourcing.persistence import Tracking, TrackingRecorder
from kombu.connection import Connection

from ordersys.messaging.consumer import EventConsumer
from ordersys.messaging.contracts import IntegrationEvent
from ordersys.messaging.publisher import ConfirmedPublisher, Outgoing
from ordersys.messaging.relay import Relay, checkpoint_for
from ordersys.readmodels.records import Records
from ordersys.readmodels.records_postgres import PostgresRecordStore
from ordersys.settings import Settings
from ordersys.shop.cli import main
from ordersys.testing import eventually
from ordersys.transport import ERROR_HEADER, Envelope
from tests.integration.test_transport_rabbitmq import URL, delete_topology
from tests.unit.accounts import Account, Bank

INTEGRATION_EVENTS = [Account.Opened, Account.Deposited]
ROOT = Path(__file__).resolve().parents[2]


class Ledger:
    """A consuming service whose effect is a document per applied event."""

    def __init__(
        self,
        settings: Settings,
        prefix: str,
        poison: str = "",
        contracts: dict[str, type[IntegrationEvent]] | None = None,
    ) -> None:
        # A store of its own: the consumer closes its store when it stops.
        self.reader = PostgresRecordStore(settings, settings.postgres_schema, "ledger")
        self.poison = poison
        self.consumer = EventConsumer(
            settings,
            "ledger",
            {"Opened": self.record, "Deposited": self.record},
            patterns=["bank.*"],
            prefix=prefix,
            max_attempts=3,
            contracts=contracts,
        )

    def record(self, envelope: Envelope, records: Records) -> None:
        if envelope.body.get("owner") == self.poison:
            raise RuntimeError("cannot open an account for the poison owner")
        # A key of its own per application: an event applied twice shows twice.
        records.put(
            "ledger",
            uuid.uuid4().hex,
            {
                "message_id": envelope.headers["message_id"],
                "kind": envelope.message_type,
            },
        )

    def rows(self) -> list[tuple[str, str]]:
        with self.reader.reading() as records:
            return [(d["message_id"], d["kind"]) for d in records.find("ledger")]


@pytest.fixture
def prefix() -> Iterator[str]:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    yield prefix
    delete_topology(prefix)


def run_until_idle(relay: Relay) -> None:
    while relay.run_once():
        pass


def relay_everything(bank: Bank, prefix: str) -> None:
    """Publish every integration event of ``bank`` so far, confirmed."""
    publisher = ConfirmedPublisher(URL, f"{prefix}.events")
    run_until_idle(
        Relay(bank, "bank", publisher, integration_events=INTEGRATION_EVENTS)
    )
    publisher.close()


def open_accounts(bank: Bank, count: int, owner: str = "owner") -> None:
    for n in range(count):
        account = Account(f"{owner}{n}", Decimal(0))
        account.deposit(Decimal(1))
        bank.write(account)


def queue_depth(name: str) -> int:
    with Connection(URL) as connection:
        _, messages, _ = connection.default_channel.queue_declare(name, passive=True)
    return int(messages)


def test_every_integration_event_is_applied_once(
    pg_settings: Settings, prefix: str
) -> None:
    bank = Bank(pg_settings)
    ledger = Ledger(pg_settings, prefix)
    ledger.consumer.start()
    open_accounts(bank, 100)
    relay = Relay(
        bank,
        "bank",
        ConfirmedPublisher(URL, f"{prefix}.events"),
        integration_events=INTEGRATION_EVENTS,
        batch_size=64,
    )

    run_until_idle(relay)

    assert eventually(lambda: len(ledger.rows()) == 200)
    ledger.consumer.stop()
    relay.publisher.close()
    rows = ledger.rows()
    assert len({message_id for message_id, _ in rows}) == 200
    assert sorted({kind for _, kind in rows}) == ["Deposited", "Opened"]
    assert relay.lag() == 0


class CrashAfterPublishing(TrackingRecorder):
    """A checkpoint whose process dies before the position is written."""

    def insert_tracking(self, tracking: Tracking) -> None:
        raise SystemExit("killed between publishing and recording the position")

    def max_tracking_id(self, application_name: str) -> int | None:
        return None


def test_a_relay_killed_before_recording_its_position_republishes_and_nothing_doubles(
    pg_settings: Settings, prefix: str
) -> None:
    bank = Bank(pg_settings)
    ledger = Ledger(pg_settings, prefix)
    ledger.consumer.start()
    open_accounts(bank, 25)
    publisher = ConfirmedPublisher(URL, f"{prefix}.events")
    doomed = Relay(
        bank,
        "bank",
        publisher,
        integration_events=INTEGRATION_EVENTS,
        checkpoint=CrashAfterPublishing(),
    )

    with pytest.raises(SystemExit):
        run_until_idle(doomed)
    assert eventually(lambda: len(ledger.rows()) == 50)
    restarted = Relay(bank, "bank", publisher, integration_events=INTEGRATION_EVENTS)
    assert restarted.position() == 0
    run_until_idle(restarted)

    assert eventually(lambda: queue_depth(f"{prefix}.ledger") == 0)
    ledger.consumer.stop()
    publisher.close()
    assert len(ledger.rows()) == 50
    assert restarted.position() == bank.head_position()
    assert isinstance(checkpoint_for(bank, "relay"), TrackingRecorder)


def dead_letters(prefix: str) -> list[tuple[Any, dict[str, Any]]]:
    found = []
    with Connection(URL) as connection:
        channel = connection.default_channel
        while (
            message := channel.basic_get(f"{prefix}.ledger.dlq", no_ack=True)
        ) is not None:
            found.append((message.body, dict(message.headers or {})))
    return found


def test_a_poison_event_goes_to_the_dlq_with_its_reason_and_the_rest_are_applied(
    pg_settings: Settings, prefix: str
) -> None:
    bank = Bank(pg_settings)
    ledger = Ledger(pg_settings, prefix, poison="poison0")
    ledger.consumer.start()
    open_accounts(bank, 1, owner="poison")
    open_accounts(bank, 5)
    relay_everything(bank, prefix)

    assert eventually(lambda: len(ledger.rows()) == 11)
    assert eventually(lambda: queue_depth(f"{prefix}.ledger.dlq") == 1)
    ledger.consumer.stop()
    [(_, headers)] = dead_letters(prefix)
    assert "failed 3 times" in headers[ERROR_HEADER]
    assert "poison owner" in headers[ERROR_HEADER]


def test_a_malformed_message_is_dead_lettered_and_the_consumer_goes_on(
    pg_settings: Settings, prefix: str
) -> None:
    bank = Bank(pg_settings)
    ledger = Ledger(pg_settings, prefix)
    ledger.consumer.start()
    with Connection(URL) as connection:
        channel = connection.default_channel
        channel.basic_publish(
            channel.prepare_message(b"{not json", content_type="application/json"),
            exchange=f"{prefix}.events",
            routing_key="bank.Opened",
        )
    open_accounts(bank, 2)
    relay_everything(bank, prefix)

    assert eventually(lambda: len(ledger.rows()) == 4)
    assert eventually(lambda: queue_depth(f"{prefix}.ledger.dlq") == 1)
    ledger.consumer.stop()
    [(_, headers)] = dead_letters(prefix)
    assert "malformed" in headers[ERROR_HEADER]


def test_dlq_replay_re_drives_a_poison_event_once_the_handler_is_fixed(
    pg_settings: Settings,
    prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("ORDERSYS_POSTGRES_DBNAME", "ordersys_test")
    monkeypatch.setenv("ORDERSYS_POSTGRES_SCHEMA", pg_settings.postgres_schema)
    bank = Bank(pg_settings)
    ledger = Ledger(pg_settings, prefix, poison="poison0")
    ledger.consumer.start()
    open_accounts(bank, 1, owner="poison")
    relay_everything(bank, prefix)
    queue = f"{prefix}.ledger"
    assert eventually(lambda: queue_depth(f"{queue}.dlq") == 1)

    assert main(["dlq", "list"]) == 0
    assert main(["dlq", "show", queue]) == 0
    listed = capsys.readouterr().out
    ledger.poison = ""
    assert main(["dlq", "replay", queue]) == 0
    assert eventually(lambda: len(ledger.rows()) == 2)
    assert main(["dlq", "replay", queue]) == 0
    replayed = capsys.readouterr().out
    ledger.consumer.stop()

    assert f"       1  {queue}.dlq" in listed
    assert "Opened  failed 3 times" in listed
    assert replayed.splitlines() == [
        f"re-drove 1 dead letter(s) to {queue}",
        f"re-drove 0 dead letter(s) to {queue}",
    ]
    assert queue_depth(f"{queue}.dlq") == 0
    assert sorted(kind for _, kind in ledger.rows()) == ["Deposited", "Opened"]


class AccountOpened(IntegrationEvent):
    """What the ledger relies on in an ``Opened`` event."""

    message_type = "Opened"
    owner: str
    overdraft_limit: Decimal


def publish_raw(prefix: str, body: dict[str, Any], **headers: Any) -> None:
    with Connection(URL) as connection:
        channel = connection.default_channel
        channel.basic_publish(
            channel.prepare_message(
                json.dumps(body).encode(),
                content_type="application/json",
                headers={"message_id": str(uuid.uuid4()), **headers},
            ),
            exchange=f"{prefix}.events",
            routing_key="bank.Opened",
        )


def test_messages_that_break_their_contract_are_dead_lettered_with_the_reason(
    pg_settings: Settings, prefix: str
) -> None:
    bank = Bank(pg_settings)
    ledger = Ledger(pg_settings, prefix, contracts={"Opened": AccountOpened})
    ledger.consumer.start()
    opened = {"originator_id": str(uuid.uuid4()), "originator_version": 1}
    opened["timestamp"] = "2026-11-24T12:00:00+00:00"
    publish_raw(prefix, {"message_type": "Opened", "body": opened})
    publish_raw(
        prefix,
        {
            "message_type": "Opened",
            "body": {**opened, "owner": "x", "overdraft_limit": "1"},
        },
        message_version=2,
    )
    open_accounts(bank, 1)
    relay_everything(bank, prefix)

    assert eventually(lambda: len(ledger.rows()) == 2)
    assert eventually(lambda: queue_depth(f"{prefix}.ledger.dlq") == 2)
    ledger.consumer.stop()
    reasons = {headers[ERROR_HEADER] for _, headers in dead_letters(prefix)}
    assert reasons == {
        "invalid Opened: owner: Field required; overdraft_limit: Field required",
        "Opened version 2 is newer than this consumer understands (1)",
    }


def test_a_relay_process_killed_mid_stream_loses_and_doubles_nothing(
    pg_settings: Settings, prefix: str
) -> None:
    bank = Bank(pg_settings)
    for start in range(0, 1500, 500):
        accounts = [Account(f"owner{n}", Decimal(0)) for n in range(start, start + 500)]
        for account in accounts:
            account.deposit(Decimal(1))
        bank.save(*accounts)
    ledger = Ledger(pg_settings, prefix)
    ledger.consumer.start()
    worker = [sys.executable, "-m", "tests.integration.relay_worker"]
    worker += [pg_settings.postgres_schema, prefix]

    for _ in range(2):
        process = subprocess.Popen(worker, cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert process.stdout is not None
        assert process.stdout.readline().strip() == "started"
        time.sleep(0.3)
        process.send_signal(signal.SIGKILL)
        process.wait()
    finished = subprocess.run(
        worker, cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )

    assert finished.returncode == 0, finished.stderr
    assert eventually(lambda: len(ledger.rows()) == 3000, within=60)
    assert eventually(lambda: queue_depth(f"{prefix}.ledger") == 0)
    ledger.consumer.stop()
    rows = ledger.rows()
    duplicates = ledger.consumer.duplicates
    print(f"3000 events, relay killed twice, {duplicates} duplicates left alone")
    assert len({message_id for message_id, _ in rows}) == len(rows) == 3000


def test_a_batch_sent_at_once_arrives_whole_in_order_and_is_confirmed(
    prefix: str,
) -> None:
    # Given a queue bound to the events exchange
    exchange, queue = f"{prefix}.events", f"{prefix}.batch"
    with Connection(URL) as connection:
        channel = connection.default_channel
        channel.exchange_declare(exchange, "topic", durable=True, auto_delete=False)
        channel.queue_declare(queue, durable=True, auto_delete=False)
        channel.queue_bind(queue, exchange, "bank.#")
    publisher = ConfirmedPublisher(URL, exchange)
    batch = [
        Outgoing(
            routing_key="bank.Deposited",
            body=json.dumps({"n": n, "pad": "x" * (n % 700)}).encode(),
            message_id=f"bank:{n}",
            headers={"message_id": f"bank:{n}", "message_version": 1},
        )
        for n in range(1, 1001)
    ]

    # When the batch is sent in one call, then another
    publisher.send(batch[:500])
    last = publisher.send(batch[500:])

    # Then the broker confirms all of it, and each message arrives once, in order
    assert eventually(lambda: publisher.confirmed_through(wait=0.5) == last)
    assert publisher.in_flight == 0
    publisher.close()
    received = []
    with Connection(URL) as connection:
        channel = connection.default_channel
        while (message := channel.basic_get(queue, no_ack=True)) is not None:
            received.append(message)
    assert [m.properties["message_id"] for m in received] == [
        f"bank:{n}" for n in range(1, 1001)
    ]
    assert [json.loads(m.body)["n"] for m in received] == list(range(1, 1001))
    assert received[-1].headers["message_version"] == 1
