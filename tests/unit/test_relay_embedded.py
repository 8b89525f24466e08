"""The relay in the embedded mode: integration events through the in-process
transport, positions recorded as in production."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from decimal import Decimal

from pydantic_core import to_jsonable_python

from ordersys.messaging.publisher import TransportPublisher
from ordersys.messaging.relay import Relay, message_body
from ordersys.settings import Settings
from ordersys.transport import Envelope
from ordersys.transport.memory import MemoryTransport
from tests.unit.accounts import Account, Bank


def test_integration_events_reach_subscribers_and_others_do_not(
    memory_settings: Settings,
) -> None:
    bank = Bank(memory_settings)
    transport = MemoryTransport()
    received: list[Envelope] = []
    transport.subscribe("ledger", ["bank.*"], received.append)
    account = Account("ann", Decimal(0))
    account.deposit(Decimal("2.50"))
    account.close()
    bank.write(account)
    relay = Relay(
        bank,
        "bank",
        TransportPublisher(transport),
        integration_events=[Account.Opened, Account.Deposited],
    )

    while relay.run_once():
        pass

    assert [e.message_type for e in received] == ["Opened", "Deposited"]
    assert received[1].body["amount"] == "2.50"
    assert received[1].headers["message_id"] == "bank:2"
    assert received[1].headers["message_version"] == "1"
    assert relay.position() == 3
    assert relay.lag() == 0


def test_a_message_body_is_written_as_pydantic_would_write_it() -> None:
    # Given an event's fields of every kind the relay meets
    payload = {
        "originator_id": uuid.UUID("6f0c8a52-3b7e-4f41-9d2a-1c5e7b9a0d34"),
        "timestamp": datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC),
        "amount": Decimal("2.50"),
        "huge": 2**70,
        "tags": frozenset({"a"}),
        "lines": {uuid.UUID(int=1): {"quantity": 2}},
    }

    # When the relay writes its message, then it says what pydantic says
    expected = to_jsonable_python({"message_type": "Opened", "body": payload})
    assert json.loads(message_body("Opened", payload)) == expected
    assert b'"2026-01-02T03:04:05.678901Z"' in message_body("Opened", payload)
