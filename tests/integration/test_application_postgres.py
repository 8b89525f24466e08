"""Applications on the real PostgreSQL: one schema per application, errors that
name the server. (Concurrency is in the event-store contract.)"""

from __future__ import annotations

from decimal import Decimal

import pytest

from ordersys import InfrastructureUnavailable, load_settings
from ordersys.persistence.database import connect
from ordersys.settings import Settings
from tests.unit.accounts import Account, Bank


def test_events_are_stored_in_the_configured_schema_and_read_back(
    pg_settings: Settings,
) -> None:
    bank = Bank(pg_settings)
    account = Account("ann", Decimal(0))
    account.deposit(Decimal("9.99"))

    written = bank.write(account)

    assert written.version == 2
    assert Bank(pg_settings).get(Account, account.id).balance == Decimal("9.99")
    with connect(pg_settings) as conn:
        tables = conn.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = %s",
            (pg_settings.postgres_schema,),
        ).fetchall()
    assert ("bank_events",) in tables


def test_an_unreachable_postgres_is_named_with_its_address() -> None:
    settings = load_settings({"postgres_port": 1, "postgres_connect_timeout": 1})

    with pytest.raises(InfrastructureUnavailable) as raised:
        Bank(settings)

    assert raised.value.message.startswith("PostgreSQL is not reachable at 127.0.0.1:1")
