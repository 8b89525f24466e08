"""``ordersys demo``: seed products and place a stream of orders, so that a
newcomer sees the system work."""

from __future__ import annotations

import random
import time
import uuid
from collections import Counter
from typing import Any

from ordersys.transport import Envelope, Transport

PRODUCTS = [
    ("BOOK", "A good book", 1299, 10),
    ("PEN", "A pen", 150, 25),
    ("LAMP", "A lamp", 4500, 2),
]


def call(transport: Transport, service: str, message_type: str, **body: Any) -> Any:
    return transport.call(service, Envelope.new(message_type, body), timeout=10)


def run_demo(
    transport: Transport, orders: int, seed: int | None = None
) -> Counter[str]:
    """Seed a customer and products, place ``orders`` orders, and wait for each
    to be confirmed or cancelled; returns how many ended how, and prints it."""
    pick = random.Random(seed)
    suffix = uuid.uuid4().hex[:6].upper()
    customer = call(
        transport,
        "users",
        "user.create",
        email=f"demo-{suffix.lower()}@example.com",
        name="Demo Customer",
        password="demo password",
    )
    products = [
        (
            call(
                transport,
                "catalog",
                "product.create",
                sku=f"{sku}-{suffix}",
                name=name,
                price_cents=price,
                stock=stock,
            )["product_id"],
            price,
        )
        for sku, name, price, stock in PRODUCTS
    ]
    print(f"seeded customer {customer['aggregate_id']} and {len(products)} products")
    placed = []
    for _ in range(orders):
        product_id, price = pick.choice(products)
        line = {
            "product_id": product_id,
            "quantity": pick.randint(1, 3),
            "unit_price_cents": price,
        }
        placed.append(
            call(
                transport,
                "orders",
                "order.create",
                customer_id=customer["aggregate_id"],
                lines=[line],
                submit=True,
            )
        )
    outcomes: Counter[str] = Counter()
    for written in placed:
        order = _final(transport, written)
        outcomes[order["status"]] += 1
        reason = f" ({order['reason']})" if order["reason"] else ""
        print(f"order {order['order_id']}: {order['status']}{reason}")
    summary = ", ".join(
        f"{n} {status.lower()}" for status, n in sorted(outcomes.items())
    )
    print(f"{orders} orders: {summary}")
    _print_figures(transport, customer["aggregate_id"], orders)
    return outcomes


def _print_figures(transport: Transport, customer_id: str, orders: int) -> None:
    """What the notifications and analytics services made of the orders (they
    follow the orders' events, so they may need a moment to catch up)."""
    deadline = time.monotonic() + 10
    while True:
        told = call(
            transport, "notifications", "notifications.getAll", customer_id=customer_id
        )
        figures = call(transport, "analytics", "analytics.get")
        finished = sum(
            n
            for status, n in figures["orders_by_status"].items()
            if status in ("CONFIRMED", "CANCELLED")
        )
        if (told["total"] >= orders and finished >= orders) or (
            time.monotonic() > deadline
        ):
            break
        time.sleep(0.1)
    conversion = figures["conversion"]
    print(
        f"notifications sent to the customer: {told['total']}; analytics: "
        f"{conversion['confirmed']} of {conversion['submitted']} submitted orders "
        f"confirmed, revenue by day {figures['revenue_per_day']}"
    )


def _final(transport: Transport, written: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + 60
    while True:
        order: dict[str, Any] = call(
            transport,
            "orders",
            "order.get",
            order_id=written["aggregate_id"],
            after_position=written["position"],
        )
        if order["status"] in ("CONFIRMED", "CANCELLED") or time.monotonic() > deadline:
            return order
        time.sleep(0.05)
