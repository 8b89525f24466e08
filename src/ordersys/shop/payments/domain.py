"""Payments: one per order, captured at most once, refunded at most once.

A payment's id is derived from its order's, so asking to pay an order twice
finds the same payment: capture is idempotent per order.
"""

from __future__ import annotations

from enum import StrEnum
from uuid import NAMESPACE_URL, UUID, uuid5

from ordersys import Aggregate, BusinessRuleViolation, event
from ordersys.shop.catalog.domain import positive


class PaymentStatus(StrEnum):
    PENDING = "PENDING"
    CAPTURED = "CAPTURED"
    DECLINED = "DECLINED"
    REFUNDED = "REFUNDED"


def payment_id(order_id: UUID) -> UUID:
    return uuid5(NAMESPACE_URL, f"ordersys:payment:{order_id}")


class Payment(Aggregate):
    class PaymentRequested(Aggregate.Created):
        order_id: UUID
        amount_cents: int

    class PaymentCaptured(Aggregate.Event):
        provider_reference: str

    class PaymentDeclined(Aggregate.Event):
        reason: str

    class PaymentRefunded(Aggregate.Event):
        reason: str

    @classmethod
    def create_id(cls, order_id: UUID) -> UUID:
        return payment_id(order_id)

    @event(PaymentRequested)
    def __init__(self, order_id: UUID, amount_cents: int) -> None:
        self.order_id = order_id
        self.amount_cents = amount_cents
        self.status = PaymentStatus.PENDING
        self.provider_reference = ""
        self.reason = ""

    @classmethod
    def request(cls, order_id: UUID, amount_cents: int) -> Payment:
        return cls(order_id, positive(amount_cents, "amount_cents"))

    def capture(self, provider_reference: str) -> bool:
        """Record the provider's capture; False (and nothing recorded) if this
        payment was captured already."""
        if self.status == PaymentStatus.CAPTURED:
            return False
        self._require_pending("capture")
        self._captured(provider_reference)
        return True

    @event(PaymentCaptured)
    def _captured(self, provider_reference: str) -> None:
        self.status = PaymentStatus.CAPTURED
        self.provider_reference = provider_reference

    def decline(self, reason: str) -> None:
        self._require_pending("decline")
        self._declined(reason)

    @event(PaymentDeclined)
    def _declined(self, reason: str) -> None:
        self.status = PaymentStatus.DECLINED
        self.reason = reason

    def refund(self, reason: str) -> None:
        """Give a captured payment back (compensation after capture)."""
        if self.status != PaymentStatus.CAPTURED:
            raise BusinessRuleViolation(
                f"only a captured payment can be refunded, this one is {self.status}"
            )
        self._refunded(reason)

    @event(PaymentRefunded)
    def _refunded(self, reason: str) -> None:
        self.status = PaymentStatus.REFUNDED
        self.reason = reason

    def _require_pending(self, action: str) -> None:
        if self.status != PaymentStatus.PENDING:
            raise BusinessRuleViolation(
                f"cannot {action} a payment that is {self.status}"
            )
