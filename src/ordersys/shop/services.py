"""The services of the bundled system by name (``ordersys run <name>``), in
the order they start: those of :data:`ordersys.shop.system.SHOP`, each
composer importing its service's code when first called."""

from __future__ import annotations

from ordersys.shop.system import SHOP

SERVICES = SHOP.composers()
