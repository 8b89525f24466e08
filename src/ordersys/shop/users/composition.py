"""The users service, composed: its application, and a relay that tells other
services (notifications) who registered, without their password hashes."""

from __future__ import annotations

from ordersys.messaging.publisher import publisher_for
from ordersys.messaging.relay import Relay
from ordersys.service import Service
from ordersys.shop.settings import ShopSettings
from ordersys.shop.users.domain import User
from ordersys.shop.users.service import Users, register_handlers
from ordersys.transport import Transport


def build(settings: ShopSettings, transport: Transport) -> Service:
    users = Users(settings)
    relay = Relay(
        users,
        "users",
        publisher_for(transport),
        integration_events=(User.UserRegistered, User.UserUpdated),
        private_fields={"password_hash"},
    )
    service = Service(
        "users", settings, transport, applications=[users], workers=[relay]
    )
    register_handlers(service.commands, service.queries, users)
    return service
