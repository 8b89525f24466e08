"""One routing table for the whole shop: every message a service handles is
routed to that service, by the gateway and by the order saga alike."""

from __future__ import annotations

import pytest

from ordersys.processes import ProcessRunner
from ordersys.shop.routes import ROUTES, service_for
from ordersys.shop.services import SERVICES
from ordersys.shop.settings import load_shop_settings
from ordersys.transport.memory import MemoryTransport

EMBEDDED = ("users", "catalog", "payments", "orders")
"""The services that need no server to be built."""


@pytest.mark.parametrize("name", EMBEDDED)
def test_every_message_a_service_handles_is_routed_to_it(name: str) -> None:
    settings = load_shop_settings({"persistence": "memory"})
    service = SERVICES[name](settings, MemoryTransport())
    # Messages of other words (operations, say) are addressed to a service by
    # its name, not routed by the table.
    routed = [t for t in service.handled() if t.split(".", 1)[0] in ROUTES]

    misrouted = {t: service_for(t) for t in routed if service_for(t) != name}

    assert routed
    assert misrouted == {}


def test_the_table_names_only_services_of_the_shop() -> None:
    assert set(ROUTES.values()) <= set(SERVICES) - {"gateway"}


def test_the_saga_sends_through_the_same_table() -> None:
    orders = SERVICES["orders"](
        load_shop_settings({"persistence": "memory"}), MemoryTransport()
    )
    (saga,) = [w for w in orders.workers if isinstance(w, ProcessRunner)]

    assert saga.sender.routes == ROUTES
