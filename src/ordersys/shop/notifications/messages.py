"""What a customer is told, and when: pure rules, no I/O.

An order's customer is told when it is confirmed, cancelled (with the
reason) and shipped; other events tell nobody anything.
"""

from __future__ import annotations

from dataclasses import dataclass

from ordersys.messaging.contracts import IntegrationEvent
from ordersys.shop.contracts import OrderCancelled, OrderConfirmed, OrderShipped


@dataclass(frozen=True)
class Text:
    kind: str
    subject: str
    body: str


def text_for(event: IntegrationEvent) -> Text | None:
    """The notification ``event`` calls for, or None."""
    order = str(event.originator_id)
    if isinstance(event, OrderConfirmed):
        return Text(
            "order_confirmed",
            f"Order {order} is confirmed",
            f"Your order {order} is confirmed: the items are reserved for you "
            "and the payment is taken.",
        )
    if isinstance(event, OrderCancelled):
        return Text(
            "order_cancelled",
            f"Order {order} is cancelled",
            f"Your order {order} is cancelled: {event.reason}. "
            "Nothing is charged for it.",
        )
    if isinstance(event, OrderShipped):
        return Text(
            "order_shipped",
            f"Order {order} is on its way",
            f"Your order {order} has been shipped.",
        )
    return None
