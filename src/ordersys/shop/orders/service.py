"""The orders service's application and command handlers."""

from __future__ import annotations

from ordersys import Application, CommandBus, Written
from ordersys.shop.orders.commands import CreateOrder, SubmitOrder, UpdateOrderStatus
from ordersys.shop.orders.domain import Order, Status, line


class Orders(Application):
    aggregate_types = (Order,)


def register_handlers(bus: CommandBus, orders: Orders) -> None:
    """Route the orders service's commands on ``bus`` to ``orders``."""

    @bus.handles(CreateOrder)
    def create(command: CreateOrder) -> Written:
        order = Order.place(
            command.customer_id,
            [line(x.product_id, x.quantity, x.unit_price_cents) for x in command.lines],
        )
        if command.submit:
            order.submit()
        return orders.write(order)

    @bus.handles(SubmitOrder)
    def submit(command: SubmitOrder) -> Written:
        order = orders.get(Order, command.order_id, command.expected_version)
        order.submit()
        return orders.write(order)

    @bus.handles(UpdateOrderStatus)
    def update_status(command: UpdateOrderStatus) -> Written:
        order = orders.get(Order, command.order_id)
        # The saga may ask twice (after a crash): the status it wants is enough.
        if order.status != command.status:
            if command.status == Status.CONFIRMED:
                order.confirm()
            else:
                order.cancel(command.reason)
        return orders.write(order)
