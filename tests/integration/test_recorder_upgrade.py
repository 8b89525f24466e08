"""A table written by the stock recorder keeps working under ordersys' recorder."""

from __future__ import annotations

from decimal import Decimal

from ordersys.settings import Settings
from tests.unit.accounts import Account, Bank


def test_events_written_by_the_stock_recorder_are_read_and_appended_after(
    pg_settings: Settings,
) -> None:
    stock = Bank(pg_settings.model_copy(update={"event_store": "stock"}))
    old = Account("ann", Decimal(0))
    old.deposit(Decimal(1))
    stock.write(old)
    stock.close()

    upgraded = Bank(pg_settings)
    old = upgraded.get(Account, old.id)
    old.deposit(Decimal(2))
    upgraded.write(old, Account("bob", Decimal(0)))

    notifications = upgraded.recorder.select_notifications(start=None, limit=10)
    assert [n.id for n in notifications] == [1, 2, 3, 4]
    assert upgraded.get(Account, old.id).balance == 3
