"""The orders service, composed: the orders application, its read model, and
the order saga, which sends its commands to the other services."""

from __future__ import annotations

from ordersys.cache import open_cache
from ordersys.messaging.publisher import publisher_for
from ordersys.messaging.relay import Relay
from ordersys.processes import CommandSender, ProcessRunner
from ordersys.projections import ProjectionRunner, ReadModel
from ordersys.service import Service
from ordersys.shop.catalog.commands import ReserveInventory
from ordersys.shop.faults import CrashingSender
from ordersys.shop.orders.domain import Order
from ordersys.shop.orders.projections import OrderDetails
from ordersys.shop.orders.saga import OrderProcess
from ordersys.shop.orders.service import Orders, register_handlers, register_queries
from ordersys.shop.payments.commands import CapturePayment
from ordersys.shop.routes import ROUTES
from ordersys.shop.settings import ShopSettings
from ordersys.transport import RpcSender, Transport

CRASH_STEPS = {
    ReserveInventory.message_type: "reserved",
    CapturePayment.message_type: "captured",
}
"""The saga's crash points (``ordersys.shop.faults``), by the command whose reply
they follow."""

INTEGRATION_EVENTS = (
    Order.OrderPlaced,
    Order.OrderSubmitted,
    Order.OrderConfirmed,
    Order.OrderCancelled,
    Order.OrderShipped,
    Order.OrderDelivered,
)
"""What the orders service publishes for other services (notifications, analytics)."""


def build(settings: ShopSettings, transport: Transport) -> Service:
    orders = Orders(settings)
    process = OrderProcess(settings, step_seconds=settings.saga_step_timeout)
    cache = open_cache(settings)
    details = ProjectionRunner(OrderDetails, orders, cache=cache)
    sender: CommandSender = RpcSender(
        transport, timeout=settings.rpc_timeout, routes=ROUTES
    )
    if settings.crash_at:
        sender = CrashingSender(sender, settings, "orders", CRASH_STEPS)
    saga = ProcessRunner(process, [orders], sender)
    relay = Relay(
        orders,
        "orders",
        publisher_for(transport),
        integration_events=INTEGRATION_EVENTS,
    )
    service = Service(
        "orders",
        settings,
        transport,
        applications=[orders, process],
        workers=[details, saga, relay],
    )
    register_handlers(service.commands, orders)
    register_queries(service.queries, details, ReadModel(details.store, cache))
    return service
