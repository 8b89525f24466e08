"""The users service, composed."""

from __future__ import annotations

from ordersys.service import Service
from ordersys.settings import Settings
from ordersys.shop.users.service import Users, register_handlers
from ordersys.transport import Transport


def build(settings: Settings, transport: Transport) -> Service:
    users = Users(settings)
    service = Service("users", settings, transport, applications=[users])
    register_handlers(service.commands, service.queries, users)
    return service
