"""Orders: given, when, then; totals always add up; statuses only move forward."""

from __future__ import annotations

from uuid import UUID

import pytest
from hypothesis import given as hypothesis_given
from hypothesis import settings
from hypothesis import strategies as st

from ordersys import BusinessRuleViolation, InvalidInput
from ordersys.shop.orders.domain import Order, Status, line
from tests.unit.shop.specs import given, recorded

CUSTOMER = UUID("00000000-0000-0000-0000-0000000000c1")
BOOK = UUID("00000000-0000-0000-0000-0000000000b1")
PEN = UUID("00000000-0000-0000-0000-0000000000b2")


def pending(*lines: dict[str, object]) -> Order:
    return given(Order.place(CUSTOMER, list(lines)))


def test_placing_an_order_records_its_lines_and_it_is_pending() -> None:
    order = Order.place(CUSTOMER, [line(BOOK, 2, 1299)])

    assert recorded(order) == [
        (
            "OrderPlaced",
            {
                "customer_id": CUSTOMER,
                "lines": [
                    {"product_id": str(BOOK), "quantity": 2, "unit_price_cents": 1299}
                ],
            },
        )
    ]
    assert (order.status, order.total_cents) == (Status.PENDING, 2598)


def test_a_product_on_two_lines_is_refused() -> None:
    with pytest.raises(InvalidInput, match="one line only"):
        Order.place(CUSTOMER, [line(BOOK, 1, 100), line(BOOK, 1, 100)])


@pytest.mark.parametrize(("quantity", "price"), [(0, 100), (1, 0), (-1, 100)])
def test_a_line_needs_a_positive_quantity_and_price(quantity: int, price: int) -> None:
    with pytest.raises(InvalidInput, match="must be positive"):
        line(BOOK, quantity, price)


def test_adding_an_item_records_it_and_raises_the_total() -> None:
    order = pending(line(BOOK, 1, 1299))

    order.add_item(PEN, 3, 150)

    assert recorded(order) == [
        ("ItemAdded", {"product_id": str(PEN), "quantity": 3, "unit_price_cents": 150})
    ]
    assert order.total_cents == 1299 + 450


def test_adding_more_of_a_product_adds_to_its_line() -> None:
    order = pending(line(BOOK, 1, 1299))

    order.add_item(BOOK, 2, 1299)

    assert order.lines[str(BOOK)]["quantity"] == 3


def test_adding_a_product_at_another_price_is_refused() -> None:
    order = pending(line(BOOK, 1, 1299))

    with pytest.raises(BusinessRuleViolation, match="another price"):
        order.add_item(BOOK, 1, 999)


def test_removing_an_item_records_it() -> None:
    order = pending(line(BOOK, 1, 1299), line(PEN, 1, 150))

    order.remove_item(PEN)

    assert recorded(order) == [("ItemRemoved", {"product_id": str(PEN)})]
    assert order.total_cents == 1299


def test_removing_an_item_not_on_the_order_is_refused() -> None:
    with pytest.raises(BusinessRuleViolation, match="not on the order"):
        pending(line(BOOK, 1, 1299)).remove_item(PEN)


def test_submitting_records_the_lines_and_total_for_the_saga() -> None:
    order = pending(line(BOOK, 2, 1299))

    order.submit()

    lines = [{"product_id": str(BOOK), "quantity": 2, "unit_price_cents": 1299}]
    assert recorded(order) == [
        ("OrderSubmitted", {"lines": lines, "total_cents": 2598})
    ]
    assert order.status == Status.SUBMITTED


def test_an_empty_order_cannot_be_submitted() -> None:
    with pytest.raises(BusinessRuleViolation, match="without items"):
        pending().submit()


def submitted() -> Order:
    order = Order.place(CUSTOMER, [line(BOOK, 1, 1299)])
    order.submit()
    return given(order)


def test_no_items_are_added_or_removed_after_submission() -> None:
    order = submitted()

    with pytest.raises(BusinessRuleViolation, match="an order that is SUBMITTED"):
        order.add_item(PEN, 1, 150)
    with pytest.raises(BusinessRuleViolation, match="cannot remove items from"):
        order.remove_item(BOOK)


def test_confirming_a_submitted_order_records_it() -> None:
    order = submitted()

    order.confirm()

    assert recorded(order) == [("OrderConfirmed", {})]
    assert order.status == Status.CONFIRMED


def test_an_order_is_confirmed_only_once_submitted() -> None:
    with pytest.raises(BusinessRuleViolation, match="confirm an order that is PENDING"):
        pending(line(BOOK, 1, 1)).confirm()


def confirmed() -> Order:
    order = submitted()
    order.confirm()
    return given(order)


def test_cancelling_records_the_reason() -> None:
    order = confirmed()

    order.cancel("payment declined")

    assert recorded(order) == [("OrderCancelled", {"reason": "payment declined"})]
    assert (order.status, order.reason) == (Status.CANCELLED, "payment declined")


def test_cancelling_needs_a_reason() -> None:
    with pytest.raises(InvalidInput, match="say why"):
        confirmed().cancel(" ")


def test_shipping_and_delivering_a_confirmed_order() -> None:
    order = confirmed()

    order.ship()
    order.deliver()

    assert recorded(order) == [("OrderShipped", {}), ("OrderDelivered", {})]
    assert order.status == Status.DELIVERED


def test_a_cancelled_order_is_not_shipped() -> None:
    order = confirmed()
    order.cancel("changed my mind")

    with pytest.raises(
        BusinessRuleViolation, match="cannot ship an order that is CANCELLED"
    ):
        order.ship()


def test_unconfirmed_orders_are_not_shipped_nor_unshipped_ones_delivered() -> None:
    with pytest.raises(
        BusinessRuleViolation, match="cannot ship an order that is PENDING"
    ):
        pending(line(BOOK, 1, 1)).ship()
    with pytest.raises(
        BusinessRuleViolation, match="cannot deliver an order that is CONFIRMED"
    ):
        confirmed().deliver()


def test_a_shipped_order_is_not_cancelled() -> None:
    order = confirmed()
    order.ship()

    with pytest.raises(
        BusinessRuleViolation, match="cannot cancel an order that is SHIPPED"
    ):
        order.cancel("too late")


ALLOWED = {
    Status.PENDING: {Status.PENDING, Status.SUBMITTED, Status.CANCELLED},
    Status.SUBMITTED: {Status.SUBMITTED, Status.CONFIRMED, Status.CANCELLED},
    Status.CONFIRMED: {Status.CONFIRMED, Status.CANCELLED, Status.SHIPPED},
    Status.SHIPPED: {Status.SHIPPED, Status.DELIVERED},
    Status.DELIVERED: {Status.DELIVERED},
    Status.CANCELLED: {Status.CANCELLED},
}
products = st.sampled_from([BOOK, PEN, UUID(int=7)])
commands = st.lists(
    st.one_of(
        st.tuples(
            st.just("add"), products, st.integers(1, 5), st.sampled_from([100, 250])
        ),
        st.tuples(st.just("remove"), products, st.just(0), st.just(0)),
        st.tuples(
            st.sampled_from(["submit", "confirm", "ship", "deliver", "cancel"]),
            products,
            st.just(0),
            st.just(0),
        ),
    ),
    max_size=40,
)


@settings(max_examples=300, deadline=None)
@hypothesis_given(commands=commands)
def test_any_sequence_of_commands_keeps_totals_and_statuses_valid(
    commands: list[tuple[str, UUID, int, int]],
) -> None:
    order = Order.place(CUSTOMER, [])
    for name, product, quantity, price in commands:
        before = order.status
        try:
            if name == "add":
                order.add_item(product, quantity, price)
            elif name == "remove":
                order.remove_item(product)
            elif name == "cancel":
                order.cancel("because")
            else:
                getattr(order, name)()
        except BusinessRuleViolation:
            assert order.status == before
        assert order.status in ALLOWED[before]
        assert order.total_cents == sum(
            each["quantity"] * each["unit_price_cents"] for each in order.lines.values()
        )
        assert all(each["quantity"] > 0 for each in order.lines.values())
