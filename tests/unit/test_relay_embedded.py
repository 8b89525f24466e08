"""The relay in the embedded mode: integration events through the in-process
transport, positions recorded as in production."""

from __future__ import annotations

from decimal import Decimal

from ordersys.messaging.publisher import TransportPublisher
from ordersys.messaging.relay import Relay
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
