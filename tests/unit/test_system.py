"""The system runner: services declared once, composed one at a time (a
process each) or all together in this process (embedded)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ordersys import Command, InvalidInput, load_settings
from ordersys.service import Service
from ordersys.settings import Settings
from ordersys.system import System
from ordersys.transport import Envelope, Transport
from ordersys.transport.memory import MemoryTransport


class Greet(Command):
    message_type = "greeter.greet"
    name: str


def greeter(settings: Settings, transport: Transport) -> Service:
    service = Service("greeter", settings, transport)

    @service.commands.handles(Greet)
    def greet(command: Greet) -> str:
        return f"hello {command.name}"

    return service


def caller(settings: Settings, transport: Transport) -> Service:
    """A service that only sends: it asks the greeter over the transport."""
    return Service("caller", settings, transport)


GREETINGS = System("greetings", {"greeter": greeter, "caller": caller})


def ask(transport: Transport, name: str) -> Any:
    return transport.call("greeter", Envelope.new("greeter.greet", {"name": name}), 1)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return load_settings({"persistence": "sqlite", "sqlite_path": str(tmp_path)})


def test_a_service_is_composed_by_name_over_the_transport_given(
    settings: Settings,
) -> None:
    transport = MemoryTransport()

    with GREETINGS.service("greeter", settings, transport):
        answer = ask(transport, "ann")

    assert answer == "hello ann"


def test_an_unknown_service_is_refused_naming_the_known_ones(
    settings: Settings,
) -> None:
    with pytest.raises(InvalidInput, match="it has greeter, caller"):
        GREETINGS.service("mailer", settings, MemoryTransport())


def test_a_service_declared_by_topic_is_imported_when_composed(
    settings: Settings,
) -> None:
    lazy = System("lazy", {"greeter": f"{__name__}:greeter"})

    service = lazy.composers()["greeter"](settings, MemoryTransport())

    assert service.name == "greeter"


def test_embedded_services_share_one_transport_until_all_have_stopped(
    settings: Settings,
) -> None:
    system = GREETINGS.embedded(settings)
    system.start()
    greeter_first = ask(system.transport, "ann")
    system["caller"].stop()  # a service stopping cuts off none of the others
    still = ask(system.transport, "bob")
    system.stop()

    assert (greeter_first, still) == ("hello ann", "hello bob")
    assert not system.transport.is_served("greeter")


def test_embedded_refuses_events_on_postgresql() -> None:
    with pytest.raises(InvalidInput, match="ORDERSYS_PERSISTENCE=sqlite"):
        GREETINGS.embedded(load_settings({"persistence": "postgres"}))
