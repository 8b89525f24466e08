"""Acceptance of the order-management system: every service its own process,
on the real PostgreSQL, RabbitMQ and Redis."""

from __future__ import annotations

import random
from concurrent.futures import ThreadPoolExecutor

import pytest

from ordersys.settings import Settings
from tests.system.checks import check_agreement
from tests.system.system import System, eventually


def test_orders_end_confirmed_or_cancelled_and_every_service_agrees(
    system: System, pg_settings: Settings
) -> None:
    system.start(payment_decline_rate="0.3")
    customer = system.customer()
    stock = {system.product(stock=n): n for n in (3, 5, 40)}
    pick = random.Random(7)
    placed = [
        system.place(customer, pick.choice(list(stock)), quantity=pick.randint(1, 3))
        for _ in range(30)
    ]

    orders = system.final(placed)

    outcomes = {o["status"] for o in orders}
    assert outcomes == {"CONFIRMED", "CANCELLED"}
    reasons = {o["reason"].split(":")[0] for o in orders if o["reason"]}
    assert {"payment declined", "stock not reserved"} <= reasons
    check_agreement(system, pg_settings, orders, stock)


def test_200_concurrent_orders_for_50_in_stock_confirm_exactly_50(
    system: System, pg_settings: Settings
) -> None:
    system.start()
    customer = system.customer()
    product = system.product(stock=50)

    with ThreadPoolExecutor(16) as pool:
        placed = list(pool.map(lambda _: system.place(customer, product), range(200)))
    orders = system.final(placed, within=180)

    statuses = [o["status"] for o in orders]
    assert statuses.count("CONFIRMED") == 50
    assert statuses.count("CANCELLED") == 150
    check_agreement(system, pg_settings, orders, {product: 50})


@pytest.mark.parametrize(
    ("point", "service"),
    [
        ("catalog.reserved", "catalog"),
        ("payments.captured", "payments"),
        ("orders.reserved", "orders"),
        ("orders.captured", "orders"),
        ("orders.confirming", "orders"),
    ],
)
def test_a_service_killed_at_a_saga_step_recovers_every_order(
    system: System, pg_settings: Settings, point: str, service: str
) -> None:
    others = [name for name in system.names() if name != service]
    system.start(others)
    system.start([service], crash_at=f'["{point}"]')
    customer = system.customer()
    stock = {system.product(stock=4): 4, system.product(stock=20): 20}
    placed = [system.place(customer, p, quantity=2) for p in stock for _ in range(3)]

    eventually(lambda: system.died(service), within=60)
    system.restart(service)
    orders = system.final(placed, within=120)

    assert [o["status"] for o in orders].count("CONFIRMED") == 2 + 3
    check_agreement(system, pg_settings, orders, stock)


def test_with_payments_stopped_an_order_is_cancelled_at_its_deadline(
    system: System, pg_settings: Settings
) -> None:
    system.start(saga_step_timeout="3")
    system.processes["payments"].stop()
    customer = system.customer()
    product = system.product(stock=5)

    (order,) = system.final([system.place(customer, product, quantity=2)], within=120)

    assert order["status"] == "CANCELLED"
    assert order["reason"] == "the payment did not answer in time"
    doc = system.call("catalog", "product.get", product_id=product)
    assert (doc["on_hand"], doc["reserved"], doc["available"]) == (5, 0, 5)
    system.start(["payments"])
    check_agreement(system, pg_settings, [order], {product: 5})
