"""What must hold across the services once every order is final: the read
model, stock, payments, notifications and analytics agree."""

from __future__ import annotations

from collections import Counter
from typing import Any
from uuid import UUID

from ordersys.settings import Settings
from ordersys.shop.catalog.domain import inventory_id
from ordersys.shop.catalog.service import Catalog
from ordersys.shop.payments.domain import Payment, payment_id
from ordersys.shop.payments.service import Payments
from tests.system.system import System, eventually

KINDS = {"CONFIRMED": "order_confirmed", "CANCELLED": "order_cancelled"}


def captures(settings: Settings, order_id: str) -> int:
    """How many captures the payments service recorded for the order."""
    payments = Payments(settings)
    try:
        events = payments.repository.event_store.get(payment_id(UUID(order_id)))
        return sum(isinstance(e, Payment.PaymentCaptured) for e in events)
    finally:
        payments.close()


def stock_never_negative(settings: Settings, product: str) -> bool:
    """Replays the product's inventory version by version."""
    catalog = Catalog(settings)
    try:
        inventory_id_ = inventory_id(UUID(product))
        latest = catalog.repository.get(inventory_id_)
        return all(
            catalog.repository.get(inventory_id_, version=v).available >= 0
            for v in range(1, latest.version + 1)
        )
    finally:
        catalog.close()


def check_agreement(
    system: System,
    settings: Settings,
    orders: list[dict[str, Any]],
    initial_stock: dict[str, int],
) -> None:
    for order in orders:
        assert order["status"] in KINDS, order
        payment = system.find("payments", "payment.get", order_id=order["order_id"])
        if order["status"] == "CONFIRMED":
            assert payment is not None, order
            assert payment["status"] == "CAPTURED", (order, payment)
            assert payment["amount_cents"] == order["total_cents"]
            assert captures(settings, order["order_id"]) == 1, order
        else:
            assert order["reason"], order
            assert payment is None or payment["status"] != "CAPTURED", (order, payment)

    sold: Counter[str] = Counter()
    for order in orders:
        if order["status"] == "CONFIRMED":
            for line in order["lines"].values():
                sold[line["product_id"]] += line["quantity"]
    for product, stock in initial_stock.items():
        expected = {"on_hand": stock - sold[product], "reserved": 0}

        seen: list[dict[str, Any]] = []

        def settled(
            product: str = product,
            expected: dict[str, int] = expected,
            seen: list[dict[str, Any]] = seen,
        ) -> dict[str, Any] | None:
            doc = system.call("catalog", "product.get", product_id=product)
            figures = {k: doc[k] for k in ("on_hand", "reserved")}
            seen[:] = [figures]
            return doc if figures == expected else None

        # After a restart the saga resends what it had not recorded; the stock
        # settles once those replies are in, which a loaded machine may delay.
        try:
            doc = eventually(settled, within=60)
        except AssertionError:
            msg = f"stock of {product}: {seen}, expected {expected}"
            raise AssertionError(msg) from None
        assert doc["available"] == doc["on_hand"] >= 0
        assert stock_never_negative(settings, product)

    for order in orders:

        def told(order: dict[str, Any] = order) -> list[dict[str, Any]] | None:
            found = system.call(
                "notifications", "notifications.getAll", order_id=order["order_id"]
            )["notifications"]
            return found or None

        notes = eventually(told, within=30)
        assert [n["kind"] for n in notes] == [KINDS[order["status"]]], notes
        assert notes[0]["customer_id"] == order["customer_id"]

    statuses = Counter(order["status"] for order in orders)
    revenue = sum(o["total_cents"] for o in orders if o["status"] == "CONFIRMED")

    last: list[Any] = []

    def counted() -> dict[str, Any] | None:
        figures: dict[str, Any] = system.call("analytics", "analytics.get")
        last[:] = [figures["orders_by_status"]]
        return figures if figures["orders_by_status"] == dict(statuses) else None

    try:
        figures = eventually(counted, within=30)
    except AssertionError:
        msg = f"analytics counts {last}, the orders {dict(statuses)}"
        raise AssertionError(msg) from None
    assert sum(d["revenue_cents"] for d in figures["revenue_per_day"]) == revenue
    assert figures["conversion"]["confirmed"] == statuses["CONFIRMED"]
    assert figures["conversion"]["submitted"] == len(orders)
    assert figures["saga_duration_seconds"]["orders"] == len(orders)
