"""A user's own order service (examples/order_desk.py), specified with
``ordersys.testing`` alone: its aggregate, its projection and its payment saga,
whose deadline fires under a virtual clock whatever date the clock starts at.
The service and this specification pass ``mypy --strict``."""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from hypothesis import given as for_all
from hypothesis import settings
from hypothesis import strategies as st

from ordersys import BusinessRuleViolation, InvalidInput
from ordersys.testing import ProjectionScenario, SagaScenario, VirtualClock, given, when

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "examples"))

from order_desk import (  # noqa: E402 (the example is a script, not a package)
    PAYMENT_WINDOW,
    OpenOrders,
    Order,
    OrderDesk,
    Payment,
    Payments,
)


def a_placed_order() -> Order:
    return Order("ann", Decimal("12.00"))


def test_placing_an_order_records_placed_with_its_total() -> None:
    when(a_placed_order).then(Order.Placed, customer="ann", total=Decimal("12.00"))


def test_a_total_that_is_not_a_decimal_is_invalid_input() -> None:
    when(lambda: Order("ann", 12.5)).then_raises(  # type: ignore[arg-type]
        InvalidInput, match="total: Input should be an instance of Decimal"
    )


def test_a_placed_order_can_be_paid() -> None:
    given(a_placed_order()).when(Order.pay).then(Order.Paid)


def test_a_paid_order_cannot_be_cancelled() -> None:
    order = a_placed_order()
    order.pay()

    given(order).when(lambda o: o.cancel("changed my mind")).then_raises(
        BusinessRuleViolation, match="paid order cannot be cancelled"
    )


def test_cancelling_a_cancelled_order_changes_nothing() -> None:
    order = a_placed_order()
    order.cancel("changed my mind")

    given(order).when(lambda o: o.cancel("again")).then_nothing()


def test_open_orders_lists_placed_orders_until_paid_or_cancelled() -> None:
    ann, bob, cy = (
        Order("ann", Decimal(12)),
        Order("bob", Decimal(30)),
        Order("cy", Decimal(5)),
    )
    bob.pay()
    cy.cancel("out of stock")

    ProjectionScenario(OpenOrders).given(ann, bob, cy).then(
        "orders", {str(ann.id): {"customer": "ann", "total": "12"}}
    )


start_dates = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.just(UTC),
)


@settings(max_examples=25, deadline=None)
@for_all(start=start_dates)
def test_an_unpaid_order_is_cancelled_when_its_payment_window_closes(
    start: datetime,
) -> None:
    with VirtualClock(start) as clock:
        payments = SagaScenario(Payments, upstream=OrderDesk, clock=clock)
        order = a_placed_order()

        payments.given(order).then_sent("desk.payment.request", amount="12.00")
        payments.then_deadlines(Payment, order.id, {"payment": start + PAYMENT_WINDOW})
        payments.advance(PAYMENT_WINDOW - timedelta(seconds=1)).then_sent()
        payments.advance(timedelta(seconds=1)).then_sent(
            "desk.order.cancel", order_id=str(order.id), reason="not paid in time"
        )
        payments.then_finished(Payment, order.id, "failed", "not paid in time")


def test_a_paid_order_keeps_no_deadline() -> None:
    with VirtualClock(datetime(1999, 12, 31, 23, 45, tzinfo=UTC)) as clock:
        payments = SagaScenario(Payments, upstream=OrderDesk, clock=clock)
        order = a_placed_order()
        payments.given(order)
        order.pay()

        payments.given(order).then_sent()
        payments.advance(PAYMENT_WINDOW).then_sent()
        payments.then_finished(Payment, order.id, "completed")


def test_the_service_and_its_specification_pass_mypy_strict() -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--config-file",
            str(ROOT / "pyproject.toml"),
            str(ROOT / "examples" / "order_desk.py"),
            __file__,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-4000:]
