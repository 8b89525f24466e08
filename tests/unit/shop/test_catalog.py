"""Catalog: products and inventory, given, when, then; and no oversell, ever."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest
from hypothesis import given as hypothesis_given
from hypothesis import settings
from hypothesis import strategies as st

from ordersys import BusinessRuleViolation, InvalidInput
from ordersys.shop.catalog.domain import InsufficientStock, Inventory, Product
from tests.unit.shop.specs import given, recorded

PRODUCT = UUID("00000000-0000-0000-0000-00000000000a")
ORDER_1 = UUID("00000000-0000-0000-0000-000000000001")
ORDER_2 = UUID("00000000-0000-0000-0000-000000000002")


def test_creating_a_product_records_it() -> None:
    product = Product.create("BOOK-1", "A book", 1299)

    assert recorded(product) == [
        (
            "ProductCreated",
            {"sku": "BOOK-1", "name": "A book", "price_cents": 1299, "currency": "EUR"},
        )
    ]


@pytest.mark.parametrize(
    ("sku", "name", "price", "currency", "field"),
    [
        ("book 1", "A book", 100, "EUR", "sku"),
        ("BOOK-1", " ", 100, "EUR", "name"),
        ("BOOK-1", "A book", 0, "EUR", "price_cents"),
        ("BOOK-1", "A book", 100, "euro", "currency"),
    ],
)
def test_a_malformed_product_is_refused_naming_the_field(
    sku: str, name: str, price: int, currency: str, field: str
) -> None:
    with pytest.raises(InvalidInput) as raised:
        Product.create(sku, name, price, currency)

    assert raised.value.details["field"] == field


def test_changing_the_price_records_it_and_the_same_price_records_nothing() -> None:
    product = given(Product.create("BOOK-1", "A book", 1299))

    product.change_price(999)
    product.change_price(999)

    assert recorded(product) == [("PriceChanged", {"price_cents": 999})]


def test_a_discontinued_product_keeps_its_price_and_cannot_be_discontinued_twice() -> (
    None
):
    product = given(Product.create("BOOK-1", "A book", 1299))
    product.discontinue()
    assert recorded(product) == [("ProductDiscontinued", {})]

    with pytest.raises(BusinessRuleViolation, match="discontinued"):
        product.change_price(100)
    with pytest.raises(BusinessRuleViolation, match="already discontinued"):
        product.discontinue()


def stocked(quantity: int) -> Inventory:
    inventory = Inventory(product_id=PRODUCT)
    if quantity:
        inventory.add_stock(quantity)
    return given(inventory)


def test_an_inventory_id_is_derived_from_its_product() -> None:
    assert Inventory(product_id=PRODUCT).id == Inventory(product_id=PRODUCT).id


def test_adding_stock_records_it() -> None:
    inventory = stocked(0)

    inventory.add_stock(5)

    assert recorded(inventory) == [("StockAdded", {"quantity": 5})]
    assert inventory.available == 5


def test_adding_no_stock_is_refused() -> None:
    with pytest.raises(InvalidInput, match="quantity must be positive"):
        stocked(0).add_stock(0)


def test_a_reservation_that_fits_is_recorded_and_reduces_what_is_available() -> None:
    inventory = stocked(5)

    inventory.reserve(ORDER_1, 3)

    assert recorded(inventory) == [
        ("StockReserved", {"order_id": ORDER_1, "quantity": 3})
    ]
    assert (inventory.on_hand, inventory.reserved, inventory.available) == (5, 3, 2)


def test_a_reservation_that_does_not_fit_is_refused_saying_what_is_available() -> None:
    inventory = stocked(5)
    inventory.reserve(ORDER_1, 3)
    inventory.collect_events()

    with pytest.raises(InsufficientStock) as raised:
        inventory.reserve(ORDER_2, 3)

    assert raised.value.details == {
        "product_id": str(PRODUCT),
        "requested": 3,
        "available": 2,
    }
    assert recorded(inventory) == []


def test_reserving_again_for_the_same_order_changes_nothing() -> None:
    inventory = stocked(5)
    inventory.reserve(ORDER_1, 3)
    inventory.collect_events()

    inventory.reserve(ORDER_1, 3)

    assert recorded(inventory) == []
    assert inventory.available == 2


def test_releasing_gives_the_stock_back_once() -> None:
    inventory = stocked(5)
    inventory.reserve(ORDER_1, 3)
    inventory.collect_events()

    inventory.release(ORDER_1)
    inventory.release(ORDER_1)

    assert recorded(inventory) == [("ReservationReleased", {"order_id": ORDER_1})]
    assert inventory.available == 5


def test_committing_takes_the_reserved_stock_out_for_good_once() -> None:
    inventory = stocked(5)
    inventory.reserve(ORDER_1, 3)
    inventory.collect_events()

    inventory.commit(ORDER_1)
    inventory.commit(ORDER_1)

    assert recorded(inventory) == [("ReservationCommitted", {"order_id": ORDER_1})]
    assert (inventory.on_hand, inventory.reserved, inventory.available) == (2, 0, 2)


operations = st.lists(
    st.tuples(
        st.sampled_from(["add", "reserve", "release", "commit"]),
        st.integers(min_value=0, max_value=5),
        st.integers(min_value=1, max_value=7),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None)
@hypothesis_given(operations=operations)
def test_no_sequence_of_operations_ever_oversells(
    operations: list[tuple[str, int, int]],
) -> None:
    inventory = Inventory(product_id=PRODUCT)
    orders = [uuid4() for _ in range(6)]
    committed = 0
    added = 0
    for name, order, quantity in operations:
        try:
            if name == "add":
                inventory.add_stock(quantity)
                added += quantity
            elif name == "reserve":
                inventory.reserve(orders[order], quantity)
            elif name == "release":
                inventory.release(orders[order])
            else:
                held = inventory.reservations.get(str(orders[order]), 0)
                inventory.commit(orders[order])
                committed += held
        except InsufficientStock:
            pass
        assert 0 <= inventory.reserved <= inventory.on_hand
        assert inventory.available >= 0
        assert inventory.on_hand == added - committed
