"""The notifications service, composed: a consumer of the orders' and users'
events, the notification record, and delivery through the configured channels."""

from __future__ import annotations

from ordersys.messaging.consumer import EventConsumer
from ordersys.service import Service
from ordersys.settings import Settings
from ordersys.shop.contracts import USER_EVENTS, by_name
from ordersys.shop.notifications.channels import channels_from
from ordersys.shop.notifications.records import Records
from ordersys.shop.notifications.service import (
    CONSUMED,
    Delivery,
    handlers,
    register_queries,
)
from ordersys.transport import Transport


def build(settings: Settings, transport: Transport) -> Service:
    channels = channels_from(settings)
    schema = settings.postgres_schema or "notifications"
    records = Records(settings, schema)
    consumer = EventConsumer(
        settings,
        "notifications",
        handlers(records, channels),
        patterns=[
            f"{'users' if c in USER_EVENTS else 'orders'}.{c.message_type}"
            for c in CONSUMED
        ],
        contracts=by_name(*CONSUMED),
        schema=schema,
    )
    service = Service(
        "notifications",
        settings,
        transport,
        workers=[consumer, Delivery(settings, records, channels)],
    )
    register_queries(service.queries, records)
    return service
