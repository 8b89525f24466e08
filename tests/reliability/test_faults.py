"""The reliability suite: orders placed through the gateway while services are
killed and restarted, RabbitMQ's connections closed and its app restarted,
PostgreSQL's backends terminated and Redis flushed. Afterwards the system must
converge: every accepted order final, read models equal to a rebuild from the
events, stock and payments reconciled, nothing stuck outside a dead-letter
queue. It prints what it did and what it found."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from typing import Any

import pytest

from ordersys.projections import ProjectionRunner
from ordersys.readmodels.memory import MemoryReadModelStore
from ordersys.readmodels.postgres import PostgresReadModelStore
from ordersys.settings import Settings
from ordersys.shop.catalog.projections import ProductCatalog
from ordersys.shop.catalog.service import Catalog
from ordersys.shop.orders.projections import OrderDetails
from ordersys.shop.orders.service import Orders
from tests.reliability import faults
from tests.reliability.load import Load, applied_twice
from tests.system.checks import check_agreement
from tests.system.system import System

SECRET = "the reliability suite's gateway key, long enough for HS256"
SERVICE_ORDER = ["notifications", "analytics", "users", "catalog", "payments", "orders"]


def rebuilt_equals_live(settings: Settings) -> dict[str, int]:
    """Rebuild the orders and catalog read models from their events (in memory)
    and compare every document with the live one in PostgreSQL, once the live
    one has caught up; how many documents differ."""
    mismatches: dict[str, int] = {}
    for projection, app_class, collection, key in (
        (OrderDetails, Orders, "orders", "order_id"),
        (ProductCatalog, Catalog, "products", "product_id"),
    ):
        app = app_class(settings)
        runner = ProjectionRunner(
            projection, app, store=MemoryReadModelStore(projection.name)
        )
        runner.catch_up()
        rebuilt = {d[key]: d for d in runner.store.find(collection, limit=100_000)}
        live_store = PostgresReadModelStore(settings, projection.name)

        def differ(
            live_store: PostgresReadModelStore = live_store,
            rebuilt: dict[str, Any] = rebuilt,
            collection: str = collection,
            key: str = key,
        ) -> int:
            live = {d[key]: d for d in live_store.find(collection, limit=100_000)}
            return sum(live.get(k) != v for k, v in rebuilt.items()) + len(
                set(live) - set(rebuilt)
            )

        deadline = time.monotonic() + 30
        while (found := differ()) and time.monotonic() < deadline:
            time.sleep(0.5)
        mismatches[collection] = found
        app.close()
    return mismatches


def messages_in(prefix: str) -> dict[str, int]:
    """The run's queues that hold messages, dead-letter queues included."""
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name", "messages"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    rows = [line.split() for line in listed]
    return {
        name: int(count)
        for name, count in (row for row in rows if len(row) == 2)
        if name.startswith(prefix) and count.isdigit() and int(count)
    }


def stuck_messages(prefix: str) -> dict[str, int]:
    """Messages left in any of the run's queues but its dead-letter queues."""
    return {k: v for k, v in messages_in(prefix).items() if not k.endswith(".dlq")}


def stuck_after_settling(prefix: str, within: float = 30.0) -> dict[str, int]:
    """The messages still in the run's queues once the consumers had
    ``within`` seconds to take what was in flight when every order was final
    (events the relays republished after the last faults, say)."""
    deadline = time.monotonic() + within
    stuck = stuck_messages(prefix)
    while stuck and time.monotonic() < deadline:
        time.sleep(0.5)
        stuck = stuck_messages(prefix)
    return stuck


def test_under_faults_no_order_is_lost_and_no_effect_applied_twice(
    system: System, pg_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    system.configure(
        jwt_secret=SECRET, rate_limit_per_minute="1000000", saga_step_timeout="20"
    )
    system.start()
    stock = {system.product(stock=n): n for n in (40, 400, 4000)}
    load = Load(system, list(stock))
    injected: list[str] = []

    def inject(name: str, action: Any) -> None:
        time.sleep(1.5)
        action()
        injected.append(name)

    load.start()
    for service in [*SERVICE_ORDER, "gateway"]:
        inject(f"kill -9 {service}", lambda s=service: system.crash_and_restart(s))
    inject("rabbitmqctl close_all_connections", faults.close_all_rabbitmq_connections)
    inject("RabbitMQ stop_app/start_app", faults.restart_rabbitmq_app)
    inject(
        "pg_terminate_backend", lambda: faults.terminate_postgres_backends(pg_settings)
    )
    inject("Redis FLUSHDB", lambda: faults.flush_redis(pg_settings))
    time.sleep(2)
    load.stop()

    orders = system.final(load.accepted, within=180)
    lost = len(load.accepted) - len(orders)
    twice = applied_twice(system, pg_settings, orders)
    mismatches = rebuilt_equals_live(pg_settings)
    stuck = stuck_after_settling(system.env["ORDERSYS_MESSAGING_PREFIX"])
    statuses = Counter(o["status"] for o in orders)
    report = (
        f"\nreliability: {len(load.accepted)} orders accepted "
        f"({dict(statuses)}), {len(injected)} faults injected "
        f"({'; '.join(injected)}), orders lost: {lost}, effects applied twice: "
        f"{twice}, read-model mismatches after rebuild: {mismatches}, "
        f"messages stuck: {stuck}, client-side failures retried: {dict(load.failures)}"
    )
    with capsys.disabled():  # the counts belong in CI's output, pass or fail
        print(report)
    assert len(load.accepted) >= 20
    assert lost == 0
    assert twice == 0
    check_agreement(system, pg_settings, orders, stock)
    assert mismatches == {"orders": 0, "products": 0}
    assert stuck == {}
