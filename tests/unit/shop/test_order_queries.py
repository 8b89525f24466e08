"""The orders read model: details, lists by customer and status, and reads that
wait for their own writes."""

from __future__ import annotations

from uuid import UUID, uuid4

import pytest

from ordersys import Conflict, InvalidInput, NotFound, QueryBus
from ordersys.projections import ProjectionRunner, ReadModel
from ordersys.shop.orders.commands import (
    CreateOrder,
    GetOrder,
    ListOrders,
    OrderLine,
    SubmitOrder,
)
from ordersys.shop.orders.projections import OrderDetails
from ordersys.shop.orders.service import register_queries
from tests.unit.shop.test_order_saga import Shop

ANN, BOB = uuid4(), uuid4()


@pytest.fixture
def shop() -> Shop:
    return Shop()


def place(
    shop: Shop, customer: UUID, product: UUID, *, submit: bool = True
) -> tuple[UUID, int]:
    written = shop.bus.dispatch(
        CreateOrder(
            customer_id=customer,
            lines=[OrderLine(product_id=product, quantity=2, unit_price_cents=1000)],
            submit=submit,
        )
    )
    return UUID(str(written.aggregate_id)), written.position


def queries_for(shop: Shop) -> tuple[QueryBus, ProjectionRunner[OrderDetails]]:
    runner = ProjectionRunner(OrderDetails, shop.orders)
    queries = QueryBus()
    register_queries(queries, runner, ReadModel(runner.store))
    return queries, runner


def test_an_orders_details_follow_it_through_the_saga(shop: Shop) -> None:
    book = shop.product(stock=5)
    order_id, _ = place(shop, ANN, book)
    queries, runner = queries_for(shop)
    shop.runner.run_until_idle()
    runner.catch_up()

    details = queries.dispatch(GetOrder(order_id=order_id))

    assert details["status"] == "CONFIRMED"
    assert details["customer_id"] == str(ANN)
    assert details["total_cents"] == 2000
    assert details["lines"] == {
        str(book): {"product_id": str(book), "quantity": 2, "unit_price_cents": 1000}
    }


def test_a_read_after_a_write_waits_until_it_can_see_it(shop: Shop) -> None:
    book = shop.product(stock=5)
    queries, runner = queries_for(shop)

    with runner:
        order_id, position = place(shop, ANN, book, submit=False)
        details = queries.dispatch(GetOrder(order_id=order_id, after_position=position))

    assert details["status"] == "PENDING"


def test_lists_are_by_customer_and_status_newest_first_a_page_at_a_time(
    shop: Shop,
) -> None:
    book, scarce = shop.product(stock=10), shop.product(stock=0)
    anns = [place(shop, ANN, book)[0] for _ in range(3)]
    refused = place(shop, ANN, scarce)[0]
    place(shop, BOB, book)
    queries, runner = queries_for(shop)
    shop.runner.run_until_idle()
    runner.catch_up()

    page = queries.dispatch(ListOrders(customer_id=ANN, limit=2))
    rest = queries.dispatch(ListOrders(customer_id=ANN, limit=2, offset=2))
    cancelled = queries.dispatch(ListOrders(customer_id=ANN, status="CANCELLED"))

    assert page["total"] == 4
    ids = [o["order_id"] for o in page["orders"] + rest["orders"]]
    assert ids == [str(o) for o in [refused, *reversed(anns)]]
    assert [o["order_id"] for o in cancelled["orders"]] == [str(refused)]
    assert cancelled["orders"][0]["reason"].startswith("stock not reserved")


def test_an_unknown_order_is_not_found(shop: Shop) -> None:
    queries, _ = queries_for(shop)

    with pytest.raises(NotFound, match="not found"):
        queries.dispatch(GetOrder(order_id=uuid4()))


def test_submitting_is_refused_for_a_stale_version(shop: Shop) -> None:
    order_id, _ = place(shop, ANN, shop.product(stock=1), submit=False)

    with pytest.raises(Conflict, match="version 1, not 5"):
        shop.bus.dispatch(SubmitOrder(order_id=order_id, expected_version=5))


def test_a_read_after_a_position_never_written_is_refused_at_once(shop: Shop) -> None:
    queries, _ = queries_for(shop)
    order_id, position = place(shop, ANN, shop.product(stock=5))

    with pytest.raises(InvalidInput) as raised:
        queries.dispatch(GetOrder(order_id=order_id, after_position=position + 1000))

    assert raised.value.details["field"] == "after_position"
    assert raised.value.message == (
        f"after_position {position + 1000} is past the last event written ({position})"
    )
