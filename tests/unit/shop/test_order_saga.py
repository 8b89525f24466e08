"""The order saga in the embedded mode: every service in this process, on an
in-process command bus, with a clock the tests move."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

import pytest

from ordersys import CommandBus, NotFound, QueryBus, load_settings
from ordersys.processes import BusSender, ProcessRunner
from ordersys.shop.catalog.commands import CreateProduct, ReserveInventory, StockLine
from ordersys.shop.catalog.domain import InsufficientStock
from ordersys.shop.catalog.service import Catalog
from ordersys.shop.catalog.service import register_handlers as catalog_handlers
from ordersys.shop.orders.commands import CreateOrder, OrderLine
from ordersys.shop.orders.domain import Order, Status
from ordersys.shop.orders.saga import OrderProcess, OrderSaga
from ordersys.shop.orders.service import Orders
from ordersys.shop.orders.service import register_handlers as order_handlers
from ordersys.shop.payments.domain import Payment, PaymentStatus, payment_id
from ordersys.shop.payments.provider import SimulatedProvider
from ordersys.shop.payments.service import Payments
from ordersys.shop.payments.service import register_handlers as payment_handlers

STEP = timedelta(seconds=30)


class Shop:
    def __init__(self, decline_rate: float = 0.0) -> None:
        settings = load_settings({"persistence": "memory"})
        self.orders, self.catalog = Orders(settings), Catalog(settings)
        self.payments = Payments(settings)
        self.bus = CommandBus()
        self.queries = QueryBus()
        order_handlers(self.bus, self.orders)
        catalog_handlers(self.bus, self.catalog)
        payment_handlers(
            self.bus,
            self.queries,
            self.payments,
            SimulatedProvider(decline_rate=decline_rate, seed=1),
        )
        self.now = datetime.now(UTC)
        self.process = OrderProcess(settings, step_seconds=STEP.total_seconds())
        self.runner = ProcessRunner(
            self.process, [self.orders], BusSender(self.bus), clock=lambda: self.now
        )

    def product(self, stock: int, price_cents: int = 1000) -> UUID:
        created = self.bus.dispatch(
            CreateProduct(
                sku=f"SKU-{uuid4().hex[:6].upper()}",
                name="thing",
                price_cents=price_cents,
                stock=stock,
            )
        )
        return UUID(created["product_id"])

    def submit(self, product_id: UUID, quantity: int = 1) -> UUID:
        written = self.bus.dispatch(
            CreateOrder(
                customer_id=uuid4(),
                lines=[
                    OrderLine(
                        product_id=product_id, quantity=quantity, unit_price_cents=1000
                    )
                ],
                submit=True,
            )
        )
        return UUID(str(written.aggregate_id))

    def order(self, order_id: UUID) -> Order:
        return self.orders.get(Order, order_id)

    def stock(self, product_id: UUID) -> tuple[int, int]:
        inventory = self.catalog.inventory(product_id)
        return inventory.on_hand, inventory.available

    def payment(self, order_id: UUID) -> PaymentStatus | None:
        try:
            return self.payments.get(Payment, payment_id(order_id)).status
        except NotFound:
            return None


def test_a_submitted_order_gets_its_stock_and_payment_and_is_confirmed() -> None:
    shop = Shop()
    book = shop.product(stock=3)
    order_id = shop.submit(book, quantity=2)

    shop.runner.run_until_idle()

    assert shop.order(order_id).status == Status.CONFIRMED
    assert shop.stock(book) == (1, 1)
    assert shop.payment(order_id) == PaymentStatus.CAPTURED
    saga = shop.process.saga(OrderSaga, order_id)
    assert saga is not None
    assert saga.status == "completed"


def test_an_order_without_enough_stock_is_cancelled_with_the_reason() -> None:
    shop = Shop()
    book = shop.product(stock=1)
    order_id = shop.submit(book, quantity=2)

    shop.runner.run_until_idle()

    order = shop.order(order_id)
    assert order.status == Status.CANCELLED
    assert order.reason.startswith("stock not reserved: only 1 of product")
    assert shop.stock(book) == (1, 1)
    assert shop.payment(order_id) is None


def test_a_declined_payment_releases_the_stock_and_cancels_the_order() -> None:
    shop = Shop(decline_rate=1.0)
    book = shop.product(stock=2)
    order_id = shop.submit(book)

    shop.runner.run_until_idle()

    order = shop.order(order_id)
    assert order.status == Status.CANCELLED
    assert order.reason.startswith("payment declined")
    assert shop.stock(book) == (2, 2)
    assert shop.payment(order_id) == PaymentStatus.DECLINED


def test_a_payment_service_that_never_answers_cancels_at_the_deadline() -> None:
    shop = Shop()
    book = shop.product(stock=2)
    silent = CommandBus()
    for message_type, command in shop.bus.message_types.items():
        if not message_type.startswith("payment."):
            silent.register(command, lambda c, bus=shop.bus: bus.dispatch(c))
    shop.runner.sender = _Unanswered(BusSender(silent))
    order_id = shop.submit(book)
    shop.runner.run_until_idle()
    assert shop.order(order_id).status == Status.SUBMITTED
    assert shop.stock(book) == (2, 1)

    shop.now += STEP + timedelta(seconds=1)
    shop.runner.sender = BusSender(shop.bus)
    shop.runner.run_until_idle()

    order = shop.order(order_id)
    assert (order.status, order.reason) == (
        Status.CANCELLED,
        "the payment did not answer in time",
    )
    assert shop.stock(book) == (2, 2)


class _Unanswered:
    """Payment commands get no reply: they are never delivered."""

    def __init__(self, inner: BusSender) -> None:
        self.inner = inner

    def send(self, command_type: str, payload: dict[str, Any], command_id: UUID) -> Any:
        if command_type.startswith("payment."):
            raise _Lost()
        return self.inner.send(command_type, payload, command_id)


class _Lost(Exception):
    pass


def test_two_hundred_orders_for_fifty_in_stock_confirm_exactly_fifty() -> None:
    shop = Shop()
    book = shop.product(stock=50)
    orders = [shop.submit(book) for _ in range(200)]

    shop.runner.run_until_idle(max_rounds=10_000)

    statuses = [shop.order(order_id).status for order_id in orders]
    assert statuses.count(Status.CONFIRMED) == 50
    assert statuses.count(Status.CANCELLED) == 150
    assert shop.stock(book) == (0, 0)
    captured = [o for o in orders if shop.payment(o) == PaymentStatus.CAPTURED]
    assert set(captured) == {
        o for o, s in zip(orders, statuses, strict=True) if s == Status.CONFIRMED
    }


def test_reserving_is_all_or_nothing_across_products() -> None:
    shop = Shop()
    plenty, scarce = shop.product(stock=10), shop.product(stock=1)

    lines = [
        StockLine(product_id=plenty, quantity=5),
        StockLine(product_id=scarce, quantity=2),
    ]

    with pytest.raises(InsufficientStock, match="only 1 of product"):
        shop.bus.dispatch(ReserveInventory(order_id=uuid4(), lines=lines))

    assert shop.stock(plenty) == (10, 10)
    assert shop.stock(scarce) == (1, 1)


def test_a_confirmed_order_costs_its_saga_four_events() -> None:
    shop = Shop()
    book = shop.product(stock=3)
    order_id = shop.submit(book)

    shop.runner.run_until_idle()

    saga = shop.process.saga(OrderSaga, order_id)
    assert saga is not None
    # Started with the reservation sent; reserved and the capture sent; paid,
    # the confirmation and the commit sent and finished; their two replies.
    events = list(shop.process.events.get(saga.id))
    assert [type(e).__name__ for e in events] == [
        "Started",
        "Stepped",
        "Stepped",
        "Stepped",
    ]
    replayed = shop.process.repository.get(saga.id)
    assert replayed is not saga
    assert (replayed.status, replayed.step, replayed.awaiting, replayed.deadlines) == (
        "completed",
        "confirming",
        {},
        {},
    )
