"""The payments service's application and command handlers."""

from __future__ import annotations

from typing import Any

from ordersys import Application, BusinessRuleViolation, CommandBus, NotFound, QueryBus
from ordersys.shop.faults import crash_point
from ordersys.shop.payments.commands import CapturePayment, GetPayment, RefundPayment
from ordersys.shop.payments.domain import Payment, PaymentStatus, payment_id
from ordersys.shop.payments.provider import SimulatedProvider


class Payments(Application):
    aggregate_types = (Payment,)


class PaymentDeclined(BusinessRuleViolation):
    """The provider declined the charge (recorded on the payment)."""


def register_handlers(
    bus: CommandBus,
    queries: QueryBus,
    payments: Payments,
    provider: SimulatedProvider,
) -> None:
    """Route the payments service's commands and queries to ``payments``."""

    @queries.handles(GetPayment)
    def get(query: GetPayment) -> dict[str, Any]:
        payment = payments.get(Payment, payment_id(query.order_id))
        return {
            "order_id": str(payment.order_id),
            "amount_cents": payment.amount_cents,
            "status": str(payment.status),
            "provider_reference": payment.provider_reference,
            "reason": payment.reason,
            "version": payment.version,
        }

    @bus.handles(CapturePayment)
    def capture(command: CapturePayment) -> dict[str, str]:
        try:
            payment = payments.get(Payment, payment_id(command.order_id))
        except NotFound:
            payment = Payment.request(command.order_id, command.amount_cents)
        if payment.status == PaymentStatus.PENDING:
            charge = provider.charge(command.order_id, command.amount_cents)
            if charge.approved:
                payment.capture(charge.reference)
            else:
                payment.decline(charge.reason)
            payments.write(payment)
            crash_point(payments.settings, "payments.captured")
        if payment.status == PaymentStatus.DECLINED:
            raise PaymentDeclined(f"payment declined: {payment.reason}")
        return {"reference": payment.provider_reference}

    @bus.handles(RefundPayment)
    def refund(command: RefundPayment) -> None:
        try:
            payment = payments.get(Payment, payment_id(command.order_id))
        except NotFound:
            return
        if payment.status == PaymentStatus.CAPTURED:
            payment.refund(command.reason)
            payments.write(payment)
