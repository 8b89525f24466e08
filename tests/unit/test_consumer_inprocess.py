"""Consumers with no broker (the embedded mode): events relayed through the
in-process transport are applied once each, also when the relay publishes
them again after a crash; a message that cannot apply is kept as a dead
letter among the consumer's records."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from eventsourcing.persistence import TrackingRecorder
from eventsourcing.popo import POPOTrackingRecorder

from ordersys import load_settings
from ordersys.messaging.contracts import IntegrationEvent
from ordersys.messaging.inbox import DEAD_LETTERS
from ordersys.messaging.inprocess import InProcessConsumer, consumer_for
from ordersys.messaging.publisher import TransportPublisher
from ordersys.messaging.relay import Relay
from ordersys.readmodels.records import Records, RecordStore
from ordersys.readmodels.records_sqlite import SQLiteRecordStore
from ordersys.settings import Settings
from ordersys.transport import Envelope
from ordersys.transport.memory import MemoryTransport
from tests.unit.accounts import Account, Bank


class Opened(IntegrationEvent):
    message_type = "Opened"
    owner: str


def count(envelope: Envelope, records: Records) -> None:
    """One document per owner, counting the events applied for it."""
    owner = envelope.body["owner"]
    seen = records.get("owners", owner) or {"owner": owner, "events": 0}
    records.put("owners", owner, {**seen, "events": seen["events"] + 1})


def owners(store: RecordStore) -> dict[str, int]:
    with store.reading() as records:
        return {d["owner"]: d["events"] for d in records.find("owners")}


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings({"persistence": "sqlite", "sqlite_path": str(tmp_path)})


@pytest.fixture
def store(tmp_path: Path) -> RecordStore:
    return SQLiteRecordStore(str(tmp_path / "ledger.sqlite"), "ledger")


def relay_all(
    bank: Bank, transport: MemoryTransport, checkpoint: TrackingRecorder | None = None
) -> None:
    relay = Relay(
        bank,
        "bank",
        TransportPublisher(transport),
        integration_events=[Account.Opened],
        checkpoint=checkpoint,
    )
    while relay.run_once():
        pass


def test_relayed_events_are_applied_once_even_when_relayed_again(
    settings: Settings, store: RecordStore
) -> None:
    bank, transport = Bank(settings), MemoryTransport()
    consumer = consumer_for(
        settings, transport, "ledger", {"Opened": count}, store, patterns=["bank.*"]
    )
    consumer.start()
    bank.write(Account("ann", Decimal(0)))
    bank.write(Account("bob", Decimal(0)))

    relay_all(bank, transport)
    # A relay that lost its position (killed before recording it) sends all again.
    relay_all(bank, transport, checkpoint=POPOTrackingRecorder())

    assert isinstance(consumer, InProcessConsumer)
    assert owners(store) == {"ann": 1, "bob": 1}
    assert consumer.outcomes == {"applied": 2, "duplicate": 2}


def test_a_handler_that_keeps_failing_is_retried_then_its_message_kept(
    store: RecordStore,
) -> None:
    transport = MemoryTransport()
    calls = []

    def fail(envelope: Envelope, records: Records) -> None:
        calls.append(envelope.headers["message_id"])
        records.put("owners", "ann", {"owner": "ann", "events": 1})
        raise RuntimeError("the ledger is closed")

    consumer = InProcessConsumer(
        transport, "ledger", {"Opened": fail}, store, patterns=["bank.*"]
    )
    consumer.max_attempts = 3
    consumer.start()

    transport.publish(
        "bank.Opened", Envelope("Opened", {"owner": "ann"}, {"message_id": "bank:1"})
    )

    with store.reading() as records:
        (letter,) = records.find(DEAD_LETTERS)
    assert calls == ["bank:1"] * 3
    assert letter["message_id"] == "bank:1"
    assert letter["reason"].startswith("failed 3 times: RuntimeError")
    assert owners(store) == {}  # nothing of the failed attempts was kept
    assert consumer.outcomes == {"retried": 2, "dead_lettered": 1}


def test_a_message_that_breaks_its_contract_is_kept_at_once(
    store: RecordStore,
) -> None:
    transport = MemoryTransport()
    consumer = InProcessConsumer(
        transport,
        "ledger",
        {"Opened": count},
        store,
        patterns=["bank.*"],
        contracts={"Opened": Opened},
    )
    consumer.start()

    transport.publish(
        "bank.Opened", Envelope("Opened", {"owner": 7}, {"message_id": "bank:1"})
    )

    with store.reading() as records:
        (letter,) = records.find(DEAD_LETTERS)
    assert "owner" in letter["reason"]
    assert consumer.outcomes == {"dead_lettered": 1}


def test_messages_applied_together_apply_in_order_once_each_or_not_at_all(
    store: RecordStore,
) -> None:
    # Given an inbox that has applied one message already
    inbox = InProcessConsumer(
        MemoryTransport(), "ledger", {"Opened": count}, store, patterns=["bank.*"]
    )
    inbox.apply(Envelope("Opened", {"owner": "ann"}, {"message_id": "bank:1"}))

    def opened(owner: str, n: int) -> Envelope:
        return Envelope("Opened", {"owner": owner}, {"message_id": f"bank:{n}"})

    # When a batch holds it again, new ones, and one new one twice
    firsts = inbox.apply_all(
        [opened("ann", 1), opened("bob", 2), opened("ann", 3), opened("bob", 2)]
    )

    # Then each new one applies once, in order, and the others are duplicates
    assert firsts == [False, True, True, False]
    assert owners(store) == {"ann": 2, "bob": 1}
    assert inbox.outcomes == {"applied": 3, "duplicate": 2}

    # And a batch with a failing message applies none of its messages
    with pytest.raises(KeyError):
        inbox.apply_all([opened("cid", 4), Envelope("Closed", {}, {"message_id": "x"})])
    assert owners(store) == {"ann": 2, "bob": 1}
    assert inbox.apply(opened("cid", 4))
