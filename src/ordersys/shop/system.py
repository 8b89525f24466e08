"""The bundled shop, declared once: its services in the order they start.

The consumers come first, so that they listen before the first event is
published; the gateway, the public entry point, last, once every service
behind it answers. ``ordersys run <name>`` runs one of them over the servers
(:meth:`~ordersys.system.System.service`); the embedded mode runs them all in
one process (:meth:`~ordersys.system.System.embedded`,
:mod:`ordersys.shop.embedded`).
"""

from __future__ import annotations

from ordersys.shop.settings import ShopSettings
from ordersys.system import System

SHOP: System[ShopSettings] = System(
    "the shop",
    {
        name: f"ordersys.shop.{name}.composition:build"
        for name in (
            "notifications",
            "analytics",
            "users",
            "catalog",
            "payments",
            "orders",
            "gateway",
        )
    },
)
