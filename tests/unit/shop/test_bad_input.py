"""Bad input, any of it, gets a clear error and changes nothing.

For every command, query and integration-event contract of the shop,
arbitrary JSON either parses or is refused with ``InvalidInput`` naming the
fields; sent to the running services (embedded mode, in this process) it is
answered with a typed error, and no application records an event. A message
type nobody handles is answered with ``HandlerNotFound``.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ordersys.shop
from ordersys import HandlerNotFound, InvalidInput, OrdersysError
from ordersys.messages import Message
from ordersys.service import Service
from ordersys.shop.services import SERVICES
from ordersys.shop.settings import load_shop_settings
from ordersys.transport import Envelope
from ordersys.transport.memory import MemoryTransport


def shop_messages() -> list[type[Message]]:
    """Every message class defined in ``ordersys.shop``."""
    for module in pkgutil.walk_packages(ordersys.shop.__path__, "ordersys.shop."):
        importlib.import_module(module.name)

    def subclasses(cls: type[Message]) -> Iterator[type[Message]]:
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    return sorted(
        {c for c in subclasses(Message) if c.__module__.startswith("ordersys.shop.")},
        key=lambda c: c.message_type,
    )


MESSAGES = shop_messages()

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True)
    | st.text(max_size=30)
    | st.uuids().map(str),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def payloads(message: type[Message]) -> st.SearchStrategy[Any]:
    """Arbitrary JSON, and objects with the message's own field names."""
    names = st.sampled_from(sorted(message.model_fields) or ["x"])
    return json_values | st.dictionaries(names, json_values, max_size=6)


def test_every_service_message_and_contract_is_covered() -> None:
    types = {m.message_type for m in MESSAGES}
    assert {"order.create", "product.reserveInventory", "user.create"} <= types
    assert {"OrderPlaced", "UserRegistered", "analytics.get"} <= types
    assert len(MESSAGES) >= 30


@pytest.mark.parametrize("message", MESSAGES, ids=lambda m: m.message_type)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_any_json_parses_or_is_refused_naming_the_fields(
    message: type[Message], data: st.DataObject
) -> None:
    payload = data.draw(payloads(message))

    outcome = parsed_or_refused(message, payload)

    if isinstance(outcome, InvalidInput):
        assert outcome.message.startswith(f"invalid {message.message_type}: ")
        assert outcome.details["fields"]
    else:
        assert isinstance(outcome, message)


def parsed_or_refused(message: type[Message], payload: Any) -> Message | InvalidInput:
    try:
        return message.parse(payload)
    except InvalidInput as e:
        return e


@pytest.fixture(scope="module")
def embedded() -> Iterator[tuple[MemoryTransport, list[Service]]]:
    """The services that need no server, wired in this process."""
    memory = load_shop_settings({"persistence": "memory"})
    transport = MemoryTransport()
    services = [
        SERVICES[name](memory, transport)
        for name in ("users", "catalog", "payments", "orders")
    ]
    for service in services:
        service.start()
    yield transport, services
    for service in services:
        service.stop()


def heads(services: list[Service]) -> list[int]:
    return [app.head_position() for s in services for app in s.applications]


SERVED = [
    m
    for m in MESSAGES
    if m.message_type.split(".")[0]
    in ("user", "product", "payment", "order", "orders", "products")
]


@pytest.mark.parametrize("message", SERVED, ids=lambda m: m.message_type)
@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(data=st.data())
def test_a_service_answers_garbage_with_a_typed_error_and_records_nothing(
    embedded: tuple[MemoryTransport, list[Service]],
    message: type[Message],
    data: st.DataObject,
) -> None:
    transport, services = embedded
    service = next(s.name for s in services if message.message_type in s.handled())
    payload = data.draw(st.dictionaries(st.text(max_size=12), json_values, max_size=4))
    before = heads(services)

    if isinstance(parsed_or_refused(message, payload), InvalidInput):
        with pytest.raises(InvalidInput):
            transport.call(service, Envelope.new(message.message_type, payload), 5)
        assert heads(services) == before


def test_a_message_type_nobody_handles_is_refused(
    embedded: tuple[MemoryTransport, list[Service]],
) -> None:
    transport, services = embedded
    before = heads(services)

    with pytest.raises(HandlerNotFound) as raised:
        transport.call("orders", Envelope.new("order.teleport", {}), 5)

    assert isinstance(raised.value, OrdersysError)
    assert "order.teleport" in raised.value.message
    assert heads(services) == before
