"""The bundled services wired together over the real RabbitMQ and PostgreSQL:
users, catalog, payments and orders, each behind its own request queue."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from ordersys import Conflict, InvalidInput
from ordersys.projections import ProjectionRunner
from ordersys.service import Service
from ordersys.settings import Settings
from ordersys.shop.services import SERVICES
from ordersys.shop.settings import load_shop_settings
from ordersys.transport import Envelope
from ordersys.transport.rabbitmq import KombuTransport
from tests.integration.test_transport_rabbitmq import URL, delete_topology

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def prefix() -> Iterator[str]:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    yield prefix
    delete_topology(prefix)


@pytest.fixture
def shop(pg_settings: Settings, prefix: str) -> Iterator[KombuTransport]:
    settings = load_shop_settings(
        {
            **pg_settings.model_dump(),
            "messaging_prefix": prefix,
            "saga_step_timeout": 10.0,
        }
    )
    services: list[Service] = [
        build(settings, KombuTransport(URL, prefix=prefix))
        for build in SERVICES.values()
    ]
    for service in services:
        service.start()
    client = KombuTransport(URL, prefix=prefix)
    yield client
    client.close()
    for service in services:
        service.stop()


def call(client: KombuTransport, service: str, message_type: str, **body: Any) -> Any:
    return client.call(service, Envelope.new(message_type, body), timeout=10)


def wait_for_status(
    client: KombuTransport, written: dict[str, Any], status: str
) -> dict[str, Any]:
    """Read the order after its own write (read-your-writes), then until the
    saga has brought it to ``status`` (bounded)."""
    order_id, position = written["aggregate_id"], written["position"]
    deadline = time.monotonic() + 20
    while True:
        order = call(
            client, "orders", "order.get", order_id=order_id, after_position=position
        )
        if order["status"] == status or time.monotonic() > deadline:
            return dict(order)
        time.sleep(0.05)


def test_an_order_placed_over_rabbitmq_is_confirmed_and_one_without_stock_cancelled(
    shop: KombuTransport,
) -> None:
    customer = call(
        shop,
        "users",
        "user.create",
        email="ann@example.com",
        name="Ann",
        password="correct horse",
    )
    book = call(
        shop,
        "catalog",
        "product.create",
        sku="BOOK-1",
        name="A book",
        price_cents=1299,
        stock=1,
    )
    line = {"product_id": book["product_id"], "quantity": 1, "unit_price_cents": 1299}

    first = call(
        shop,
        "orders",
        "order.create",
        customer_id=customer["aggregate_id"],
        lines=[line],
        submit=True,
    )
    confirmed = wait_for_status(shop, first, "CONFIRMED")
    second = call(
        shop,
        "orders",
        "order.create",
        customer_id=customer["aggregate_id"],
        lines=[line],
        submit=True,
    )
    cancelled = wait_for_status(shop, second, "CANCELLED")
    listed = call(shop, "orders", "orders.getAll", customer_id=customer["aggregate_id"])

    assert confirmed["status"] == "CONFIRMED"
    assert confirmed["total_cents"] == 1299
    assert cancelled["status"] == "CANCELLED"
    assert cancelled["reason"].startswith("stock not reserved: only 0 of product")
    assert listed["total"] == 2


def test_refusals_cross_the_wire_as_typed_errors(shop: KombuTransport) -> None:
    call(
        shop,
        "users",
        "user.create",
        email="bob@example.com",
        name="Bob",
        password="correct horse",
    )

    with pytest.raises(Conflict, match="already registered"):
        call(
            shop,
            "users",
            "user.create",
            email="BOB@example.com",
            name="B",
            password="correct horse",
        )
    with pytest.raises(InvalidInput, match="price_cents"):
        call(shop, "catalog", "product.create", sku="X-1", name="x", price_cents=-5)


def test_ordersys_run_serves_until_sigterm(pg_settings: Settings, prefix: str) -> None:
    env = {
        **os.environ,
        "ORDERSYS_POSTGRES_DBNAME": "ordersys_test",
        "ORDERSYS_POSTGRES_SCHEMA": pg_settings.postgres_schema,
        "ORDERSYS_MESSAGING_PREFIX": prefix,
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "ordersys.shop.cli", "run", "catalog"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    ready = process.stdout.readline()
    client = KombuTransport(URL, prefix=prefix)
    created = call(
        client, "catalog", "product.create", sku="PEN-1", name="A pen", price_cents=150
    )
    client.close()
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)

    assert ready.startswith("catalog ready, serving")
    assert "product_id" in created
    assert process.returncode == 0, err
    assert out.strip().endswith("catalog stopped")


def test_a_read_waiting_for_its_position_does_not_delay_a_fast_read(
    pg_settings: Settings, prefix: str
) -> None:
    # Given the catalog, whose read model is held back (its projection paused)
    # after a product was created
    settings = load_shop_settings(
        {**pg_settings.model_dump(), "messaging_prefix": prefix}
    )
    catalog = SERVICES["catalog"](settings, KombuTransport.from_settings(settings))
    catalog.start()
    client = KombuTransport(URL, prefix=prefix)
    try:
        [runner] = [w for w in catalog.workers if isinstance(w, ProjectionRunner)]
        known = call(
            client,
            "catalog",
            "product.create",
            sku="A-1",
            name="a",
            price_cents=100,
            stock=1,
        )
        assert wait_for(lambda: runner.lag() == 0)
        runner.paused = True
        fresh = call(
            client,
            "catalog",
            "product.create",
            sku="B-1",
            name="b",
            price_cents=100,
            stock=1,
        )
        position = runner.application.head_position()
        arrivals: list[str] = []

        def slow() -> None:
            call(
                client,
                "catalog",
                "product.get",
                product_id=fresh["product_id"],
                after_position=position,
            )
            arrivals.append("slow")

        waiting = threading.Thread(target=slow)
        waiting.start()
        time.sleep(0.5)  # the slow read is waiting for its position now

        # When a read that needs no position is sent to the same service
        fast = call(client, "catalog", "product.get", product_id=known["product_id"])
        arrivals.append("fast")
        runner.paused = False
        waiting.join(15)
    finally:
        client.close()
        catalog.stop()

    # Then it is answered while the slow one still waits, and the slow one
    # once its position is applied
    assert fast["sku"] == "A-1"
    assert arrivals == ["fast", "slow"]


def wait_for(condition: Callable[[], bool], within: float = 10.0) -> bool:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
