"""The analytics service, composed: a consumer of the orders' events and the
figures it keeps."""

from __future__ import annotations

from ordersys.messaging.inprocess import consumer_for
from ordersys.readmodels.records import open_records
from ordersys.service import Service
from ordersys.shop.analytics.records import OrderRecords
from ordersys.shop.analytics.service import handlers, register_queries
from ordersys.shop.contracts import ORDER_EVENTS, by_name
from ordersys.shop.settings import ShopSettings
from ordersys.transport import Transport


def build(settings: ShopSettings, transport: Transport) -> Service:
    # The figures can be rebuilt by replaying the orders' events: they need
    # not wait for the disk (see ordersys.readmodels.records).
    orders = OrderRecords(open_records(settings, "analytics", durable=False))
    consumer = consumer_for(
        settings,
        transport,
        "analytics",
        handlers(orders),
        orders.store,
        patterns=["orders.*"],
        contracts=by_name(*ORDER_EVENTS),
    )
    service = Service("analytics", settings, transport, workers=[consumer])
    register_queries(service.queries, orders)
    return service
