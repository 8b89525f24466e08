"""The orders service's application and command handlers."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from ordersys import (
    Application,
    BusinessRuleViolation,
    CommandBus,
    Conflict,
    NotFound,
    QueryBus,
    Written,
)
from ordersys.projections import ProjectionRunner, ReadModel
from ordersys.shop.faults import crash_point
from ordersys.shop.orders.commands import (
    AddItem,
    CancelOrder,
    CreateOrder,
    DeliverOrder,
    GetOrder,
    ListOrders,
    RemoveItem,
    ShipOrder,
    SubmitOrder,
    UpdateOrderStatus,
)
from ordersys.shop.orders.domain import Order, Status, line
from ordersys.shop.orders.projections import OrderDetails


class Orders(Application):
    aggregate_types = (Order,)
    # Placed, then moved on by the saga within a second: kept in memory, a
    # status change needs no read. Trusted as it is, because every handler
    # whose decision depends on a state that changes writes: a replica's
    # stale copy is refused at that write, and the retry reads the store.
    aggregate_cache_size = 10_000
    aggregate_cache_trusted = True


def register_handlers(bus: CommandBus, orders: Orders) -> None:
    """Route the orders service's commands on ``bus`` to ``orders``."""

    @bus.handles(CreateOrder)
    def create(command: CreateOrder) -> Written:
        order = Order.place(
            command.customer_id,
            [line(x.product_id, x.quantity, x.unit_price_cents) for x in command.lines],
            command.order_id,
        )
        if command.submit:
            order.submit()
        try:
            return orders.write(order)
        except Conflict:
            if command.order_id is None:
                raise
            return placed_before(orders, command.order_id, command)

    @bus.handles(SubmitOrder)
    def submit(command: SubmitOrder) -> Written:
        order = orders.get(Order, command.order_id, command.expected_version)
        order.submit()
        return orders.write(order)

    @bus.handles(AddItem)
    def add_item(command: AddItem) -> Written:
        order = orders.get(Order, command.order_id, command.expected_version)
        order.add_item(command.product_id, command.quantity, command.unit_price_cents)
        return orders.write(order)

    @bus.handles(RemoveItem)
    def remove_item(command: RemoveItem) -> Written:
        order = orders.get(Order, command.order_id, command.expected_version)
        order.remove_item(command.product_id)
        return orders.write(order)

    @bus.handles(CancelOrder)
    def cancel(command: CancelOrder) -> Written:
        order = orders.get(Order, command.order_id, command.expected_version)
        if order.status != Status.PENDING:
            raise BusinessRuleViolation(
                f"an order that is {order.status} is in the order saga's hands: "
                "only a PENDING order can be cancelled by its customer",
                status=str(order.status),
            )
        order.cancel(command.reason)
        return orders.write(order)

    @bus.handles(ShipOrder)
    def ship(command: ShipOrder) -> Written:
        order = orders.get(Order, command.order_id)
        order.ship()
        return orders.write(order)

    @bus.handles(DeliverOrder)
    def deliver(command: DeliverOrder) -> Written:
        order = orders.get(Order, command.order_id)
        order.deliver()
        return orders.write(order)

    @bus.handles(UpdateOrderStatus)
    def update_status(command: UpdateOrderStatus) -> Written:
        order = orders.get(Order, command.order_id)
        # The saga may ask twice (after a crash): the status it wants is enough.
        if order.status != command.status:
            if command.status == Status.CONFIRMED:
                crash_point(orders.settings, "orders.confirming")
                order.confirm()
            else:
                order.cancel(command.reason)
        return orders.write(order)


def placed_before(orders: Orders, order_id: UUID, command: CreateOrder) -> Written:
    """What placing this order wrote the first time, position included: the
    answer to a retry whose first answer was lost (the caller timed out), so
    that it can read its write. The id is the retried request's own (see
    ``CreateOrder.order_id``); someone else's order under it stays a Conflict."""
    order = orders.get(Order, order_id)
    if order.customer_id != command.customer_id:
        raise Conflict(f"order {order.id} exists already", aggregate_id=str(order.id))
    version = 2 if command.submit else 1
    return Written(order.id, version, position_of(orders, order.id, version))


RECENT_EVENTS = 10_000
"""How far back from the head a retried write's event is looked for."""


def position_of(orders: Orders, aggregate_id: UUID, version: int) -> int:
    """The position of an aggregate's event, looked for backwards from the
    head (a retry comes soon after its first attempt); if it is older than
    :data:`RECENT_EVENTS`, the head: a position at which it is visible too."""
    head = orders.head_position()
    stop, page = head, 500
    while stop > 0 and head - stop < RECENT_EVENTS:
        start = max(stop - page + 1, 1)
        found = orders.recorder.select_notifications(start, page, stop)
        for notification in reversed(found):
            if (
                str(notification.originator_id) == str(aggregate_id)
                and notification.originator_version == version
            ):
                return notification.id
        stop = start - 1
    return head


def register_queries(
    queries: QueryBus, runner: ProjectionRunner[OrderDetails], read: ReadModel
) -> None:
    """Answer order queries from the ``OrderDetails`` read model."""

    @queries.handles(GetOrder)
    def get(query: GetOrder) -> dict[str, Any]:
        runner.caught_up(query.after_position)
        order = read.get(
            "orders", str(query.order_id), min_position=query.after_position or 0
        )
        if order is None:
            raise NotFound(
                f"order {query.order_id} not found", order_id=str(query.order_id)
            )
        return order

    @queries.handles(ListOrders)
    def list_orders(query: ListOrders) -> dict[str, Any]:
        runner.caught_up(query.after_position)
        where: dict[str, Any] = {}
        if query.customer_id is not None:
            where["customer_id"] = str(query.customer_id)
        if query.status is not None:
            where["status"] = query.status
        return read.page(
            "orders",
            where,
            order_by="placed_at",
            descending=True,
            limit=query.limit,
            offset=query.offset,
        )
