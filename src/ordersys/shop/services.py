"""The services of the bundled system, by name (``ordersys run <name>``), in
the order ``ordersys up`` starts them: the consumers first, so that their
queues exist before the first event is published."""

from __future__ import annotations

from collections.abc import Callable

from ordersys.service import Service
from ordersys.settings import Settings
from ordersys.shop.analytics import composition as analytics
from ordersys.shop.catalog import composition as catalog
from ordersys.shop.gateway import composition as gateway
from ordersys.shop.notifications import composition as notifications
from ordersys.shop.orders import composition as orders
from ordersys.shop.payments import composition as payments
from ordersys.shop.users import composition as users
from ordersys.transport import Transport

SERVICES: dict[str, Callable[[Settings, Transport], Service]] = {
    "notifications": notifications.build,
    "analytics": analytics.build,
    "users": users.build,
    "catalog": catalog.build,
    "payments": payments.build,
    "orders": orders.build,
    # Last: the public entry point opens once every service behind it answers.
    "gateway": gateway.build,
}
