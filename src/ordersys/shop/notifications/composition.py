"""The notifications service, composed: a consumer of the orders' and users'
events, the notification record, and delivery through the configured channels."""

from __future__ import annotations

from ordersys.messaging.inprocess import consumer_for
from ordersys.readmodels.records import open_records
from ordersys.service import Service
from ordersys.shop.contracts import USER_EVENTS, by_name
from ordersys.shop.notifications.channels import channels_from
from ordersys.shop.notifications.records import NotificationRecords
from ordersys.shop.notifications.service import (
    CONSUMED,
    Delivery,
    handlers,
    register_queries,
)
from ordersys.shop.settings import ShopSettings
from ordersys.transport import Transport


def build(settings: ShopSettings, transport: Transport) -> Service:
    channels = channels_from(settings)
    records = NotificationRecords(open_records(settings, "notifications"))
    consumer = consumer_for(
        settings,
        transport,
        "notifications",
        handlers(records, channels),
        records.store,
        patterns=[
            f"{'users' if c in USER_EVENTS else 'orders'}.{c.message_type}"
            for c in CONSUMED
        ],
        contracts=by_name(*CONSUMED),
    )
    service = Service(
        "notifications",
        settings,
        transport,
        workers=[consumer, Delivery(records, channels)],
    )
    register_queries(service.queries, records)
    return service
