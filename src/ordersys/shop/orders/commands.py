"""The orders service's commands."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from ordersys import Command, Query


class OrderLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    product_id: UUID
    quantity: int = Field(gt=0)
    unit_price_cents: int = Field(gt=0)


class CreateOrder(Command):
    """Place an order; with ``submit`` it is checked out at once."""

    message_type = "order.create"
    customer_id: UUID
    order_id: UUID | None = Field(
        None,
        description="The new order's id; placing an order with an id already "
        "used is a Conflict (how a retried request places nothing twice).",
    )
    lines: list[OrderLine]
    submit: bool = False


class SubmitOrder(Command):
    message_type = "order.submit"
    order_id: UUID
    expected_version: int | None = None


class AddItem(Command):
    """Add a product to a pending order (more of it, if it is on the order)."""

    message_type = "order.addItem"
    order_id: UUID
    product_id: UUID
    quantity: int = Field(gt=0)
    unit_price_cents: int = Field(gt=0)
    expected_version: int | None = None


class RemoveItem(Command):
    message_type = "order.removeItem"
    order_id: UUID
    product_id: UUID
    expected_version: int | None = None


class CancelOrder(Command):
    """The customer withdraws an order they have not submitted yet. Once
    submitted, the order saga decides: it confirms or cancels the order."""

    message_type = "order.cancel"
    order_id: UUID
    reason: str = Field("cancelled by the customer", min_length=1, max_length=500)
    expected_version: int | None = None


class ShipOrder(Command):
    message_type = "order.ship"
    order_id: UUID


class DeliverOrder(Command):
    message_type = "order.deliver"
    order_id: UUID


class UpdateOrderStatus(Command):
    """Sent by the order saga: the order is confirmed, or cancelled with a reason."""

    message_type = "order.updateStatus"
    order_id: UUID
    status: Literal["CONFIRMED", "CANCELLED"]
    reason: str = ""


class GetOrder(Query):
    """One order; with ``after_position`` it waits (bounded) until the read
    model has caught up with that write."""

    message_type = "order.get"
    order_id: UUID
    after_position: int | None = Field(None, ge=0)


class ListOrders(Query):
    """Orders newest first, of one customer and/or in one status, a page at a time."""

    message_type = "orders.getAll"
    customer_id: UUID | None = None
    status: (
        Literal[
            "PENDING", "SUBMITTED", "CONFIRMED", "CANCELLED", "SHIPPED", "DELIVERED"
        ]
        | None
    ) = None
    limit: int = Field(20, ge=1, le=100)
    offset: int = Field(0, ge=0)
    after_position: int | None = Field(None, ge=0)
