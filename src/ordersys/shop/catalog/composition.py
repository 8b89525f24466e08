"""The catalog service, composed."""

from __future__ import annotations

from ordersys.service import Service
from ordersys.settings import Settings
from ordersys.shop.catalog.service import Catalog, register_handlers
from ordersys.transport import Transport


def build(settings: Settings, transport: Transport) -> Service:
    catalog = Catalog(settings)
    service = Service("catalog", settings, transport, applications=[catalog])
    register_handlers(service.commands, catalog)
    return service
