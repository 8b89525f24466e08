"""The analytics service, composed: a consumer of the orders' events and the
figures it keeps."""

from __future__ import annotations

from ordersys.messaging.consumer import EventConsumer
from ordersys.service import Service
from ordersys.settings import Settings
from ordersys.shop.analytics.records import Records
from ordersys.shop.analytics.service import handlers, register_queries
from ordersys.shop.contracts import ORDER_EVENTS, by_name
from ordersys.transport import Transport


def build(settings: Settings, transport: Transport) -> Service:
    schema = settings.postgres_schema or "analytics"
    records = Records(settings, schema)
    consumer = EventConsumer(
        settings,
        "analytics",
        handlers(records),
        patterns=["orders.*"],
        contracts=by_name(*ORDER_EVENTS),
        schema=schema,
    )
    service = Service("analytics", settings, transport, workers=[consumer])
    register_queries(service.queries, records)
    return service
