"""The orders service's commands."""

from __future__ import annotations

from typing import Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field

from ordersys import Command


class OrderLine(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    product_id: UUID
    quantity: int = Field(gt=0)
    unit_price_cents: int = Field(gt=0)


class CreateOrder(Command):
    """Place an order; with ``submit`` it is checked out at once."""

    message_type = "order.create"
    customer_id: UUID
    lines: list[OrderLine]
    submit: bool = False


class SubmitOrder(Command):
    message_type = "order.submit"
    order_id: UUID
    expected_version: int | None = None


class UpdateOrderStatus(Command):
    """Sent by the order saga: the order is confirmed, or cancelled with a reason."""

    message_type = "order.updateStatus"
    order_id: UUID
    status: Literal["CONFIRMED", "CANCELLED"]
    reason: str = ""
