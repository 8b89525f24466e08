"""The payments service, composed, with the simulated provider its settings describe."""

from __future__ import annotations

from ordersys.service import Service
from ordersys.shop.payments.provider import SimulatedProvider
from ordersys.shop.payments.service import Payments, register_handlers
from ordersys.shop.settings import ShopSettings
from ordersys.transport import Transport


def build(settings: ShopSettings, transport: Transport) -> Service:
    payments = Payments(settings)
    service = Service("payments", settings, transport, applications=[payments])
    provider = SimulatedProvider(
        decline_rate=settings.payment_decline_rate, latency=settings.payment_latency
    )
    register_handlers(service.commands, service.queries, payments, provider)
    return service
