"""The first start on an empty database: however many services start at
once, each creates what it needs (the database, its schemas, tables and
types) or finds it created by another, and none fails on another's creation."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator

import pytest

from ordersys.shop.services import SERVICES
from ordersys.shop.settings import ShopSettings, load_shop_settings
from ordersys.transport.memory import MemoryTransport
from tests.servers import PrivatePostgres

STARTS = 20
NAMES = ["notifications", "analytics", "users", "catalog", "payments", "orders"]


@pytest.fixture
def fresh_database() -> Iterator[ShopSettings]:
    """Settings naming a database that does not exist yet, on a PostgreSQL of
    the test's own (twenty services at once need more connections than a
    shared server may have free), removed afterwards."""
    postgres = PrivatePostgres()
    postgres.start()
    yield load_shop_settings(
        {
            **postgres.settings,
            "postgres_dbname": f"ordersys_first_{uuid.uuid4().hex[:10]}",
            "postgres_schema": "",  # each service its schemas, as deployed
            "postgres_pool_size": 1,
        }
    )
    postgres.close()


def first_start(
    name: str, settings: ShopSettings, go: threading.Barrier, failures: list[str]
) -> None:
    """What a service does as it starts, up to serving: compose it (its
    applications, read models, relay and consumers create what they need)."""
    go.wait()
    try:
        service = SERVICES[name](settings, MemoryTransport())
    except Exception as e:
        failures.append(f"{name}: {e!r}")
        return
    for application in service.applications:
        application.close()


def test_twenty_services_starting_at_once_on_an_empty_database_all_start(
    fresh_database: ShopSettings,
) -> None:
    go = threading.Barrier(STARTS)
    failures: list[str] = []
    starts = [
        threading.Thread(
            target=first_start,
            args=(NAMES[n % len(NAMES)], fresh_database, go, failures),
        )
        for n in range(STARTS)
    ]

    for start in starts:
        start.start()
    for start in starts:
        start.join(120)

    assert not any(start.is_alive() for start in starts)
    assert failures == []
