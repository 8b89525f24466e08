"""The analytics service: keeps a row per order from the orders' events and
answers figures about them."""

from __future__ import annotations

from typing import Any

from ordersys import QueryBus
from ordersys.messaging.contracts import IntegrationEvent
from ordersys.messaging.inbox import Handler
from ordersys.readmodels.records import Records
from ordersys.shop.analytics.commands import GetAnalytics
from ordersys.shop.analytics.records import OrderRecords
from ordersys.shop.contracts import (
    ORDER_EVENTS,
    OrderCancelled,
    OrderConfirmed,
    OrderPlaced,
    OrderShipped,
    OrderSubmitted,
)
from ordersys.transport import Envelope


def handlers(orders: OrderRecords) -> dict[str, Handler]:
    """The consumer's handler per order event."""

    def columns(event: IntegrationEvent) -> dict[str, Any]:
        """The columns ``event`` sets on its order's row."""
        if isinstance(event, OrderSubmitted):
            return {
                "status": "SUBMITTED",
                "lines": event.lines,
                "total_cents": event.total_cents,
                "submitted_at": event.timestamp,
            }
        if isinstance(event, OrderConfirmed):
            return {
                "status": "CONFIRMED",
                "confirmed_at": event.timestamp,
                "finished_at": event.timestamp,
            }
        if isinstance(event, OrderCancelled):
            return {"status": "CANCELLED", "finished_at": event.timestamp}
        if isinstance(event, OrderShipped):
            return {"status": "SHIPPED"}
        return {"status": "DELIVERED"}

    def change(contract: type[IntegrationEvent]) -> Handler:
        def handle(envelope: Envelope, records: Records) -> None:
            event = contract.parse(envelope.body)
            if isinstance(event, OrderPlaced):
                orders.placed(records, event, event.lines)
            else:
                orders.change(records, event, **columns(event))

        return handle

    return {c.message_type: change(c) for c in ORDER_EVENTS}


def register_queries(queries: QueryBus, orders: OrderRecords) -> None:
    @queries.handles(GetAnalytics)
    def get(query: GetAnalytics) -> dict[str, Any]:
        return orders.figures(top=query.top, days=query.days)
