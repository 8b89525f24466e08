"""The services of the bundled system, by name (``ordersys run <name>``)."""

from __future__ import annotations

from collections.abc import Callable

from ordersys.service import Service
from ordersys.settings import Settings
from ordersys.shop.catalog import composition as catalog
from ordersys.shop.orders import composition as orders
from ordersys.shop.payments import composition as payments
from ordersys.shop.users import composition as users
from ordersys.transport import Transport

SERVICES: dict[str, Callable[[Settings, Transport], Service]] = {
    "users": users.build,
    "catalog": catalog.build,
    "payments": payments.build,
    "orders": orders.build,
}
