"""The payments service's commands."""

from __future__ import annotations

from uuid import UUID

from pydantic import Field

from ordersys import Command, Query


class CapturePayment(Command):
    """Charge the order's amount; asking again for the same order charges once."""

    message_type = "payment.capture"
    order_id: UUID
    amount_cents: int = Field(gt=0)


class RefundPayment(Command):
    """Give a captured payment back; nothing if the order's payment was not captured."""

    message_type = "payment.refund"
    order_id: UUID
    reason: str


class GetPayment(Query):
    """The payment of an order: amount, status, provider reference, reason."""

    message_type = "payment.get"
    order_id: UUID
