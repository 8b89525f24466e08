"""The integration events the shop's services publish, as their consumers
(notifications, analytics) rely on them.

Each contract is named after the event class whose relayed payload it reads
(``message_type`` is the class name); fields a contract does not name are
ignored, so the orders and users services can add fields freely.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from ordersys.messages import Message
from ordersys.messaging.contracts import IntegrationEvent


class OrderPlaced(IntegrationEvent):
    customer_id: UUID
    lines: list[dict[str, Any]]


class OrderSubmitted(IntegrationEvent):
    lines: list[dict[str, Any]]
    total_cents: int


class OrderConfirmed(IntegrationEvent):
    pass


class OrderCancelled(IntegrationEvent):
    reason: str


class OrderShipped(IntegrationEvent):
    pass


class OrderDelivered(IntegrationEvent):
    pass


class UserRegistered(IntegrationEvent):
    email: str
    name: str


class UserUpdated(IntegrationEvent):
    name: str


ORDER_EVENTS: tuple[type[IntegrationEvent], ...] = (
    OrderPlaced,
    OrderSubmitted,
    OrderConfirmed,
    OrderCancelled,
    OrderShipped,
    OrderDelivered,
)
USER_EVENTS: tuple[type[IntegrationEvent], ...] = (UserRegistered, UserUpdated)


def by_name(*contracts: type[IntegrationEvent]) -> dict[str, type[Message]]:
    """``{message_type: contract}``, as :class:`EventConsumer` takes them."""
    return {c.message_type: c for c in contracts}
