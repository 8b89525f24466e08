"""Applications on the real PostgreSQL: one schema per application, errors that
name the server. (Concurrency is in the event-store contract.)"""

from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

import pytest
from psycopg import sql

from ordersys import Application, InfrastructureUnavailable, load_settings
from ordersys.errors import StorageTaken
from ordersys.persistence.database import connect
from ordersys.settings import Settings
from ordersys.shop.orders import service as shop
from ordersys.shop.orders.domain import Order, line
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


class Orders(Application):
    """A user's own order service, named as the shop's is."""

    aggregate_types = (Account,)


def rows(settings: Settings, table: str) -> int:
    with connect(settings) as conn:
        row = conn.execute(
            sql.SQL("SELECT count(*) FROM {}").format(
                sql.Identifier(settings.postgres_schema, table)
            )
        ).fetchone()
    assert row is not None
    return int(row[0])


def test_a_class_that_opens_tables_another_class_owns_is_refused(
    pg_settings: Settings,
) -> None:
    theirs = shop.Orders(pg_settings)
    theirs.write(Order.place(uuid4(), [line(uuid4(), 1, 500)]))
    before = rows(pg_settings, "orders_events")

    with pytest.raises(StorageTaken) as raised:
        Orders(pg_settings)

    message = str(raised.value)
    assert "ordersys.shop.orders.service.Orders" in message
    assert "tests.integration.test_application_postgres.Orders" in message
    assert "ORDERSYS_POSTGRES_SCHEMA" in message
    assert "class attribute `name`" in message
    assert rows(pg_settings, "orders_events") == before


def test_the_first_application_records_itself_as_the_owner(
    pg_settings: Settings,
) -> None:
    Bank(pg_settings)
    Bank(pg_settings).write(Account("ann", Decimal(0)))

    with connect(pg_settings) as conn:
        owners = conn.execute(
            sql.SQL("SELECT name, owner FROM {}").format(
                sql.Identifier(pg_settings.postgres_schema, "ordersys_owner")
            )
        ).fetchall()
    assert owners == [("bank", "tests.unit.accounts.Bank")]


def test_applications_of_different_names_share_a_schema_table_apart(
    pg_settings: Settings,
) -> None:
    Bank(pg_settings).write(Account("ann", Decimal(0)))

    class OtherBank(Application):
        aggregate_types = (Account,)

    OtherBank(pg_settings).write(Account("bob", Decimal(0)))

    assert rows(pg_settings, "bank_events") == 1
    assert rows(pg_settings, "otherbank_events") == 1


def notifies_heard(settings: Settings, appends: int) -> int:
    """How many NOTIFYs a listener on the bank's channel hears while
    ``appends`` accounts are opened, and a moment after."""
    bank = Bank(settings)
    channel = bank.recorder.channel_name  # type: ignore[attr-defined]
    with connect(settings, autocommit=True) as listener:
        listener.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        for n in range(appends):
            bank.write(Account(f"owner{n}", Decimal(0)))
        return len(list(listener.notifies(timeout=0.5)))


def test_appends_wake_subscribers_unless_told_not_to(pg_settings: Settings) -> None:
    # Given the same appends with wake-ups on (the framework's default) and off
    quiet = pg_settings.model_copy(update={"postgres_notify": False})

    # Then subscribers hear of them only when on
    assert notifies_heard(pg_settings, 20) >= 1
    assert notifies_heard(quiet, 20) == 0
    assert load_settings({}).postgres_notify is True
