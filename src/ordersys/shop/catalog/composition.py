"""The catalog service, composed: its application and the product read model."""

from __future__ import annotations

from ordersys.cache import open_cache
from ordersys.projections import ProjectionRunner, ReadModel
from ordersys.service import Service
from ordersys.shop.catalog.projections import ProductCatalog
from ordersys.shop.catalog.service import Catalog, register_handlers, register_queries
from ordersys.shop.settings import ShopSettings
from ordersys.transport import Transport


def build(settings: ShopSettings, transport: Transport) -> Service:
    catalog = Catalog(settings)
    cache = open_cache(settings)
    products = ProjectionRunner(ProductCatalog, catalog, cache=cache)
    service = Service(
        "catalog", settings, transport, applications=[catalog], workers=[products]
    )
    register_handlers(service.commands, catalog)
    register_queries(service.queries, products, ReadModel(products.store, cache))
    return service
