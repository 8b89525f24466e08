"""The orders service's application and command handlers."""

from __future__ import annotations

from typing import Any

from ordersys import (
    Application,
    BusinessRuleViolation,
    CommandBus,
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
        return orders.write(order)

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
