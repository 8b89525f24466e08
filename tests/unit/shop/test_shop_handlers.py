"""The shop's command and query handlers, given/when/then, in the embedded
mode: what each command answers and changes, and each rule it enforces."""

from __future__ import annotations

from typing import Any
from uuid import UUID, uuid4

import pytest
from pydantic import SecretStr

from ordersys import (
    BusinessRuleViolation,
    CommandBus,
    Conflict,
    NotFound,
    QueryBus,
    RequestTimeout,
    Unauthenticated,
)
from ordersys.processes import BusSender
from ordersys.projections import ProjectionRunner, ReadModel
from ordersys.shop.catalog.commands import (
    AddStock,
    ChangePrice,
    DiscontinueProduct,
    GetProduct,
    ListProducts,
)
from ordersys.shop.catalog.projections import ProductCatalog
from ordersys.shop.catalog.service import register_queries as catalog_queries
from ordersys.shop.orders.commands import (
    AddItem,
    CancelOrder,
    CreateOrder,
    DeliverOrder,
    OrderLine,
    RemoveItem,
    ShipOrder,
)
from ordersys.shop.orders.domain import Status
from ordersys.shop.payments.commands import GetPayment
from ordersys.shop.payments.domain import PaymentStatus
from ordersys.shop.users.commands import AuthenticateUser, RegisterUser
from ordersys.shop.users.service import Users
from ordersys.shop.users.service import register_handlers as user_handlers
from tests.unit.shop.test_order_saga import Shop


@pytest.fixture
def shop() -> Shop:
    return Shop()


def pending_order(shop: Shop, product: UUID, quantity: int = 1) -> UUID:
    written = shop.bus.dispatch(
        CreateOrder(
            customer_id=uuid4(),
            lines=[
                OrderLine(product_id=product, quantity=quantity, unit_price_cents=1000)
            ],
        )
    )
    return UUID(str(written.aggregate_id))


# Orders


def test_adding_and_removing_items_of_a_pending_order_changes_its_lines(
    shop: Shop,
) -> None:
    book, pen = shop.product(stock=5), shop.product(stock=5, price_cents=150)
    order_id = pending_order(shop, book)

    added = shop.bus.dispatch(
        AddItem(order_id=order_id, product_id=pen, quantity=3, unit_price_cents=150)
    )
    removed = shop.bus.dispatch(
        RemoveItem(order_id=order_id, product_id=book, expected_version=added.version)
    )

    order = shop.order(order_id)
    assert list(order.lines) == [str(pen)]
    assert order.total_cents == 450
    assert removed.version == added.version + 1


def test_a_stale_expected_version_is_a_conflict(shop: Shop) -> None:
    book = shop.product(stock=5)
    order_id = pending_order(shop, book)
    shop.bus.dispatch(
        AddItem(order_id=order_id, product_id=uuid4(), quantity=1, unit_price_cents=1)
    )

    with pytest.raises(Conflict, match="is at version 2, not 1"):
        shop.bus.dispatch(
            RemoveItem(order_id=order_id, product_id=book, expected_version=1)
        )


def test_a_customer_cancels_a_pending_order_saying_why(shop: Shop) -> None:
    order_id = pending_order(shop, shop.product(stock=5))

    shop.bus.dispatch(CancelOrder(order_id=order_id, reason="changed my mind"))

    order = shop.order(order_id)
    assert (order.status, order.reason) == (Status.CANCELLED, "changed my mind")


def test_a_submitted_order_is_not_cancelled_by_its_customer(shop: Shop) -> None:
    order_id = shop.submit(shop.product(stock=5))

    with pytest.raises(BusinessRuleViolation, match="in the order saga's hands"):
        shop.bus.dispatch(CancelOrder(order_id=order_id))

    assert shop.order(order_id).status == Status.SUBMITTED


def test_a_confirmed_order_is_shipped_then_delivered(shop: Shop) -> None:
    order_id = shop.submit(shop.product(stock=5))
    shop.runner.run_until_idle()

    shop.bus.dispatch(ShipOrder(order_id=order_id))
    shop.bus.dispatch(DeliverOrder(order_id=order_id))

    assert shop.order(order_id).status == Status.DELIVERED


def test_an_unconfirmed_order_is_not_shipped(shop: Shop) -> None:
    order_id = pending_order(shop, shop.product(stock=5))

    with pytest.raises(BusinessRuleViolation, match="cannot ship an order that is"):
        shop.bus.dispatch(ShipOrder(order_id=order_id))


def test_an_unknown_order_is_not_found(shop: Shop) -> None:
    with pytest.raises(NotFound):
        shop.bus.dispatch(ShipOrder(order_id=uuid4()))


# Catalog


def catalog_reads(shop: Shop) -> tuple[QueryBus, ProjectionRunner[ProductCatalog]]:
    runner = ProjectionRunner(ProductCatalog, shop.catalog)
    queries = QueryBus()
    catalog_queries(queries, runner, ReadModel(runner.store))
    return queries, runner


def test_the_product_read_model_follows_prices_stock_and_reservations(
    shop: Shop,
) -> None:
    queries, runner = catalog_reads(shop)
    book = shop.product(stock=3)
    shop.bus.dispatch(ChangePrice(product_id=book, price_cents=1500))
    shop.bus.dispatch(AddStock(product_id=book, quantity=2))
    confirmed = shop.submit(book, quantity=2)
    shop.runner.run_until_idle()
    pending = shop.submit(book, quantity=1)
    shop.runner.run_once()  # reserved, not yet paid

    runner.catch_up()
    product = queries.dispatch(GetProduct(product_id=book))

    assert shop.order(confirmed).status == Status.CONFIRMED
    assert shop.order(pending).status == Status.SUBMITTED
    assert {k: product[k] for k in ("price_cents", "on_hand", "reserved")} == {
        "price_cents": 1500,
        "on_hand": 3,
        "reserved": 1,
    }
    assert product["available"] == 2


def test_discontinued_products_leave_the_list_and_are_not_reserved(
    shop: Shop,
) -> None:
    queries, runner = catalog_reads(shop)
    book, pen = shop.product(stock=3), shop.product(stock=3)
    shop.bus.dispatch(DiscontinueProduct(product_id=pen))
    order_id = shop.submit(pen)

    shop.runner.run_until_idle()
    runner.catch_up()
    listed = queries.dispatch(ListProducts())
    everything = queries.dispatch(ListProducts(include_discontinued=True))

    assert [p["product_id"] for p in listed["products"]] == [str(book)]
    assert everything["total"] == 2
    order = shop.order(order_id)
    assert order.status == Status.CANCELLED
    assert "is discontinued" in order.reason
    with pytest.raises(BusinessRuleViolation, match="discontinued"):
        shop.bus.dispatch(ChangePrice(product_id=pen, price_cents=1))


def test_an_unknown_product_is_not_found(shop: Shop) -> None:
    queries, _ = catalog_reads(shop)

    with pytest.raises(NotFound):
        queries.dispatch(GetProduct(product_id=uuid4()))


# Payments


def test_a_payment_is_read_by_its_order(shop: Shop) -> None:
    order_id = shop.submit(shop.product(stock=5), quantity=2)
    shop.runner.run_until_idle()

    payment = shop.queries.dispatch(GetPayment(order_id=order_id))

    assert payment["status"] == PaymentStatus.CAPTURED
    assert payment["amount_cents"] == 2000
    with pytest.raises(NotFound):
        shop.queries.dispatch(GetPayment(order_id=uuid4()))


# The saga when replies are lost


class _RepliesLost:
    """Commands of ``lost`` take effect but their replies never come back."""

    def __init__(self, bus: CommandBus, lost: str) -> None:
        self.inner = BusSender(bus)
        self.lost = lost

    def send(self, command_type: str, payload: dict[str, Any], command_id: UUID) -> Any:
        result = self.inner.send(command_type, payload, command_id)
        if command_type == self.lost:
            msg = f"{command_type}: no reply"
            raise RequestTimeout(msg)
        return result


def test_a_reservation_whose_reply_is_lost_is_released(shop: Shop) -> None:
    book = shop.product(stock=2)
    shop.runner.sender = _RepliesLost(shop.bus, "product.reserveInventory")
    order_id = shop.submit(book, quantity=2)

    shop.runner.run_until_idle()

    order = shop.order(order_id)
    assert order.status == Status.CANCELLED
    assert order.reason.startswith("stock not reserved: product.reserveInventory")
    assert shop.stock(book) == (2, 2)


def test_a_capture_whose_reply_is_lost_is_refunded(shop: Shop) -> None:
    book = shop.product(stock=2)
    shop.runner.sender = _RepliesLost(shop.bus, "payment.capture")
    order_id = shop.submit(book)

    shop.runner.run_until_idle()

    assert shop.order(order_id).status == Status.CANCELLED
    assert shop.payment(order_id) == PaymentStatus.REFUNDED
    assert shop.stock(book) == (2, 2)


# Users


@pytest.fixture
def users(memory_settings: Any) -> tuple[CommandBus, QueryBus]:
    commands, queries = CommandBus(), QueryBus()
    user_handlers(commands, queries, Users(memory_settings))
    commands.dispatch(
        RegisterUser(
            email="Ann@Example.com", name="Ann", password=SecretStr("pw-of-ann")
        )
    )
    return commands, queries


def test_the_right_password_authenticates_and_answers_the_profile(
    users: tuple[CommandBus, QueryBus],
) -> None:
    _, queries = users

    profile = queries.dispatch(
        AuthenticateUser(email="ann@example.com", password=SecretStr("pw-of-ann"))
    )

    assert (profile["email"], profile["role"]) == ("ann@example.com", "customer")
    assert "password_hash" not in profile


@pytest.mark.parametrize(
    ("email", "password"),
    [
        ("ann@example.com", "not-the-pw"),
        ("bob@example.com", "pw-of-ann"),
        ("not an email", "pw-of-ann"),
    ],
)
def test_a_wrong_email_or_password_is_unauthenticated_without_saying_which(
    users: tuple[CommandBus, QueryBus], email: str, password: str
) -> None:
    _, queries = users

    with pytest.raises(Unauthenticated, match=r"^wrong email or password$"):
        queries.dispatch(AuthenticateUser(email=email, password=SecretStr(password)))
