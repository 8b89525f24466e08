"""Payments: given, when, then; and the simulated provider."""

from __future__ import annotations

from uuid import UUID

import pytest

from ordersys import BusinessRuleViolation, InvalidInput
from ordersys.shop.payments.domain import Payment, PaymentStatus
from ordersys.shop.payments.provider import SimulatedProvider
from tests.unit.shop.specs import given, recorded

ORDER = UUID("00000000-0000-0000-0000-0000000000d1")


def requested() -> Payment:
    return given(Payment.request(ORDER, 2598))


def test_requesting_a_payment_records_the_order_and_amount() -> None:
    payment = Payment.request(ORDER, 2598)

    assert recorded(payment) == [
        ("PaymentRequested", {"order_id": ORDER, "amount_cents": 2598})
    ]
    assert payment.status == PaymentStatus.PENDING


def test_one_payment_per_order_its_id_comes_from_the_order() -> None:
    assert Payment.request(ORDER, 1).id == Payment.request(ORDER, 1).id


def test_a_payment_of_nothing_is_refused() -> None:
    with pytest.raises(InvalidInput, match="amount_cents must be positive"):
        Payment.request(ORDER, 0)


def test_capturing_records_the_reference_once() -> None:
    payment = requested()

    assert payment.capture("ref-1")
    assert not payment.capture("ref-2")

    assert recorded(payment) == [("PaymentCaptured", {"provider_reference": "ref-1"})]
    assert payment.status == PaymentStatus.CAPTURED


def test_declining_records_the_reason() -> None:
    payment = requested()

    payment.decline("card declined")

    assert recorded(payment) == [("PaymentDeclined", {"reason": "card declined"})]


def test_a_declined_payment_is_not_captured() -> None:
    payment = requested()
    payment.decline("card declined")

    with pytest.raises(
        BusinessRuleViolation, match="cannot capture a payment that is DECLINED"
    ):
        payment.capture("ref")


def test_a_captured_payment_is_refunded_once() -> None:
    payment = requested()
    payment.capture("ref-1")
    payment.collect_events()

    payment.refund("order cancelled")

    assert recorded(payment) == [("PaymentRefunded", {"reason": "order cancelled"})]
    with pytest.raises(BusinessRuleViolation, match="this one is REFUNDED"):
        payment.refund("again")


def test_an_uncaptured_payment_is_not_refunded() -> None:
    with pytest.raises(BusinessRuleViolation, match="this one is PENDING"):
        requested().refund("nothing to give back")


def test_the_simulated_provider_declines_at_its_rate_repeatably() -> None:
    def run() -> list[bool]:
        provider = SimulatedProvider(decline_rate=0.3, seed=42)
        return [provider.charge(ORDER, 100).approved for _ in range(1000)]

    outcomes = run()

    assert outcomes == run()
    assert 250 <= outcomes.count(False) <= 350
    assert (
        SimulatedProvider(decline_rate=0.0)
        .charge(ORDER, 100)
        .reference.startswith("sim-")
    )
    assert "declined" in SimulatedProvider(decline_rate=1.0).charge(ORDER, 100).reason


def test_a_decline_rate_outside_zero_to_one_is_refused() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        SimulatedProvider(decline_rate=1.5)
