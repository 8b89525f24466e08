"""The orders read model: one document per order, for details and lists."""

from __future__ import annotations

from functools import singledispatchmethod
from typing import Any

from ordersys import Documents, Projection
from ordersys.shop.orders.domain import Order, Status

_PENDING = Status.PENDING.value


def _total(lines: dict[str, dict[str, Any]]) -> int:
    return sum(x["quantity"] * x["unit_price_cents"] for x in lines.values())


class OrderDetails(Projection):
    """``orders/<order id>``: customer, status, reason, lines, total, version,
    and when it was placed and last changed."""

    name = "order_details"

    @singledispatchmethod
    def apply(self, domain_event: Any, docs: Documents) -> None:
        """Events of other aggregates change nothing."""

    @apply.register
    def _(self, domain_event: Order.OrderPlaced, docs: Documents) -> None:
        lines = {x["product_id"]: x for x in domain_event.lines}
        order_id, placed_at = (
            str(domain_event.originator_id),
            domain_event.timestamp.isoformat(),
        )
        docs.put(
            "orders",
            order_id,
            {
                "order_id": order_id,
                "customer_id": str(domain_event.customer_id),
                "status": _PENDING,
                "reason": "",
                "lines": lines,
                "total_cents": _total(lines),
                "version": domain_event.originator_version,
                "placed_at": placed_at,
                "updated_at": placed_at,
            },
        )

    @apply.register
    def _(self, domain_event: Order.ItemAdded, docs: Documents) -> None:
        def add(order: dict[str, Any]) -> None:
            current = order["lines"].get(domain_event.product_id)
            quantity = domain_event.quantity + (current["quantity"] if current else 0)
            order["lines"][domain_event.product_id] = {
                "product_id": domain_event.product_id,
                "quantity": quantity,
                "unit_price_cents": domain_event.unit_price_cents,
            }

        self._change(docs, domain_event, add)

    @apply.register
    def _(self, domain_event: Order.ItemRemoved, docs: Documents) -> None:
        self._change(
            docs, domain_event, lambda o: o["lines"].pop(domain_event.product_id)
        )

    @apply.register
    def _(self, domain_event: Order.OrderSubmitted, docs: Documents) -> None:
        self._change(
            docs, domain_event, lambda o: o.update(status=Status.SUBMITTED.value)
        )

    @apply.register
    def _(self, domain_event: Order.OrderConfirmed, docs: Documents) -> None:
        self._change(
            docs, domain_event, lambda o: o.update(status=Status.CONFIRMED.value)
        )

    @apply.register
    def _(self, domain_event: Order.OrderCancelled, docs: Documents) -> None:
        self._change(
            docs,
            domain_event,
            lambda o: o.update(
                status=Status.CANCELLED.value, reason=domain_event.reason
            ),
        )

    @apply.register
    def _(self, domain_event: Order.OrderShipped, docs: Documents) -> None:
        self._change(
            docs, domain_event, lambda o: o.update(status=Status.SHIPPED.value)
        )

    @apply.register
    def _(self, domain_event: Order.OrderDelivered, docs: Documents) -> None:
        self._change(
            docs, domain_event, lambda o: o.update(status=Status.DELIVERED.value)
        )

    @staticmethod
    def _change(docs: Documents, domain_event: Any, change: Any) -> None:
        key = str(domain_event.originator_id)
        order = docs.get("orders", key)
        if order is None:
            return  # placed before this read model existed and not replayed yet
        change(order)
        order["total_cents"] = _total(order["lines"])
        order["version"] = domain_event.originator_version
        order["updated_at"] = domain_event.timestamp.isoformat()
        docs.put("orders", key, order)
