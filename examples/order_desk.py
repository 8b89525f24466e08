"""An order service of someone else's, built only with ordersys' public API.

Orders are placed and paid (an aggregate with explicitly declared, typed
events, and a command bus); a projection lists the open orders; a saga asks
payments for the money and cancels an order that is not paid within 30
minutes. tests/test_order_desk.py specifies it with ``ordersys.testing``.
It runs in the embedded mode; pass ``--postgres`` to keep it in PostgreSQL.

    python examples/order_desk.py [--postgres]
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from functools import singledispatchmethod
from typing import Any
from uuid import UUID

from eventsourcing.application import ProcessingEvent

from ordersys import (
    Aggregate,
    Application,
    BusinessRuleViolation,
    BusSender,
    Command,
    CommandBus,
    Documents,
    ProcessManager,
    ProcessRunner,
    Projection,
    ProjectionRunner,
    ReadModel,
    Saga,
    event,
    load_settings,
)

PAYMENT_WINDOW = timedelta(minutes=30)


class Order(Aggregate):
    """A customer's order: placed, then paid or cancelled."""

    class Placed(Aggregate.Created):
        customer: str
        total: Decimal

    class Paid(Aggregate.Event):
        pass

    class Cancelled(Aggregate.Event):
        reason: str

    @event(Placed)
    def __init__(self, customer: str, total: Decimal) -> None:
        self.customer = customer
        self.total = total
        self.status = "placed"

    def pay(self) -> None:
        if self.status != "placed":
            raise BusinessRuleViolation(f"a {self.status} order cannot be paid")
        self._paid()

    def cancel(self, reason: str) -> None:
        if self.status == "paid":
            raise BusinessRuleViolation("a paid order cannot be cancelled")
        if self.status == "placed":
            self._cancelled(reason)

    @event(Paid)
    def _paid(self) -> None:
        self.status = "paid"

    @event(Cancelled)
    def _cancelled(self, reason: str) -> None:  # noqa: ARG002 (kept in the event)
        self.status = "cancelled"


class OrderDesk(Application):
    aggregate_types = (Order,)


class PlaceOrder(Command):
    message_type = "desk.order.place"
    customer: str
    total: Decimal


class PayOrder(Command):
    message_type = "desk.order.pay"
    order_id: UUID


class CancelOrder(Command):
    message_type = "desk.order.cancel"
    order_id: UUID
    reason: str


class RequestPayment(Command):
    message_type = "desk.payment.request"
    order_id: UUID
    amount: Decimal


def order_commands(desk: OrderDesk) -> CommandBus:
    """The desk's command handlers; each returns the position it wrote."""
    bus = CommandBus()

    @bus.handles(PlaceOrder)
    def place(command: PlaceOrder) -> str:
        return str(desk.write(Order(command.customer, command.total)).aggregate_id)

    @bus.handles(PayOrder)
    def pay(command: PayOrder) -> int | None:
        order = desk.get(Order, command.order_id)
        order.pay()
        return desk.write(order).position

    @bus.handles(CancelOrder)
    def cancel(command: CancelOrder) -> int | None:
        order = desk.get(Order, command.order_id)
        order.cancel(command.reason)
        return desk.write(order).position

    return bus


class OpenOrders(Projection):
    """Orders placed and not yet paid or cancelled, by customer."""

    name = "desk_open_orders"

    @singledispatchmethod
    def apply(self, domain_event: Any, docs: Documents) -> None:
        """Other events change no open order."""

    @apply.register
    def _(self, domain_event: Order.Placed, docs: Documents) -> None:
        docs.put(
            "orders",
            str(domain_event.originator_id),
            {"customer": domain_event.customer, "total": str(domain_event.total)},
        )

    @apply.register
    def _(self, domain_event: Order.Paid | Order.Cancelled, docs: Documents) -> None:
        docs.delete("orders", str(domain_event.originator_id))


class Payment(Saga):
    """One order's payment: requested at once, the order cancelled if the
    money is not in within the payment window."""

    def begin(self, amount: Decimal, placed_at: datetime) -> None:
        self.issue(RequestPayment(order_id=UUID(self.key), amount=amount))
        # From the event's time, not the clock's: handling it again decides the same.
        self.set_deadline("payment", placed_at + PAYMENT_WINDOW)

    def paid(self) -> None:
        self.complete()

    def on_deadline(self, name: str) -> None:  # noqa: ARG002 (one deadline)
        self.issue(CancelOrder(order_id=UUID(self.key), reason="not paid in time"))
        self.fail("not paid in time")


class Payments(ProcessManager):
    # Its own tables (desk_payments_events), apart from the bundled shop's
    # Payments service in the same database.
    name = "DeskPayments"

    @singledispatchmethod
    def policy(self, domain_event: Any, processing_event: ProcessingEvent[Any]) -> None:
        """Other events start or change no payment."""

    @policy.register
    def _(
        self, domain_event: Order.Placed, processing_event: ProcessingEvent[Any]
    ) -> None:
        payment = self.start_saga(Payment, domain_event.originator_id)
        payment.begin(domain_event.total, domain_event.timestamp)
        processing_event.collect_events(payment)

    @policy.register
    def _(
        self, domain_event: Order.Paid, processing_event: ProcessingEvent[Any]
    ) -> None:
        payment = self.saga(Payment, domain_event.originator_id)
        if payment is not None and not payment.is_finished:
            payment.paid()
            processing_event.collect_events(payment)


def main(postgres: bool) -> None:
    settings = load_settings({} if postgres else {"persistence": "memory"})
    desk = OrderDesk(settings)
    commands = order_commands(desk)
    requested: list[str] = []

    @commands.handles(RequestPayment)
    def request_payment(command: RequestPayment) -> None:
        requested.append(str(command.order_id))

    paid_id = UUID(commands.dispatch(PlaceOrder(customer="ann", total=Decimal(12))))
    unpaid_id = UUID(commands.dispatch(PlaceOrder(customer="bob", total=Decimal(30))))
    commands.dispatch(PayOrder(order_id=paid_id))

    payments = Payments(settings)
    an_hour_on = datetime.now(UTC) + timedelta(hours=1)
    runner = ProcessRunner(
        payments, [desk], BusSender(commands), clock=lambda: an_hour_on
    )
    runner.run_until_idle()

    with ProjectionRunner(OpenOrders, desk) as projection:
        projection.wait(desk.head_position(), timeout=10)
        open_orders = ReadModel(projection.store)
        still_open = [open_orders.get("orders", str(i)) for i in (paid_id, unpaid_id)]
        print("open orders of this run:", sum(d is not None for d in still_open))
        assert still_open == [None, None]

    print("payments requested:", len(requested))
    print("unpaid order:", desk.get(Order, unpaid_id).status)
    assert {str(paid_id), str(unpaid_id)} <= set(requested)
    assert desk.get(Order, unpaid_id).status == "cancelled"
    assert desk.get(Order, paid_id).status == "paid"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--postgres", action="store_true", help="use PostgreSQL")
    main(parser.parse_args().postgres)
