"""The bus-transport contract on the real RabbitMQ, and an unreachable broker."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator

import pytest
from kombu.connection import Connection

from ordersys import InfrastructureUnavailable
from ordersys.messaging.dlq import DeadLetters
from ordersys.processes import ProcessRunner
from ordersys.settings import Settings
from ordersys.testing.contracts.transport import TransportContract
from ordersys.transport import Envelope, RpcSender, Transport, serve_bus
from ordersys.transport.rabbitmq import KombuTransport
from tests.unit.bookings import Booking, Bookings, Hold, HoldExpiry, SeatsService

URL = "amqp://guest:guest@127.0.0.1:5672//"


def delete_topology(prefix: str) -> None:
    """Delete the durable queues and exchanges a test declared."""
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    with Connection(URL) as connection:
        channel = connection.channel()
        for queue in listed:
            if queue.startswith(prefix):
                channel.queue_delete(queue)
        for exchange in ("commands", "events", "dead-letters"):
            channel.exchange_delete(f"{prefix}.{exchange}")


class TestKombuTransport(TransportContract):
    @pytest.fixture(autouse=True)
    def _prefix(self) -> Iterator[None]:
        self.prefix = f"test-{uuid.uuid4().hex[:8]}"
        yield
        delete_topology(self.prefix)

    def transport(self) -> Transport:
        return KombuTransport(URL, prefix=self.prefix)


def test_an_unreachable_broker_is_named_with_its_address() -> None:
    transport = KombuTransport("amqp://guest:guest@127.0.0.1:1//")

    with pytest.raises(InfrastructureUnavailable, match=r"RabbitMQ .*127\.0\.0\.1:1//"):
        transport.call("orders", Envelope.new("order.get", {}), timeout=1)


def test_a_sagas_commands_travel_over_rabbitmq_to_a_command_bus(
    memory_settings: Settings,
) -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    server, client = (
        KombuTransport(URL, prefix=prefix),
        KombuTransport(URL, prefix=prefix),
    )
    seats = SeatsService()
    serve_bus(server, "seats", seats.bus)
    bookings, expiry = Bookings(memory_settings), HoldExpiry(memory_settings)
    runner = ProcessRunner(expiry, [bookings], RpcSender(client, timeout=5))
    booking, refused = Booking("concert"), Booking("sold out")
    bookings.write(booking, refused)

    try:
        runner.run_until_idle()
    finally:
        client.close()
        server.close()
        delete_topology(prefix)

    assert seats.handled == [("hold", str(booking.id))]
    hold = expiry.saga(Hold, refused.id)
    assert hold is not None
    assert hold.reason == "hold refused: no seats left for sold out"


def test_a_malformed_request_is_dead_lettered_and_the_service_keeps_serving() -> None:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    transport = KombuTransport(URL, prefix=prefix)
    transport.serve("echo", lambda e: e.body)
    try:
        with Connection(URL) as connection:
            connection.default_channel.basic_publish(
                connection.default_channel.prepare_message(
                    b'"not an envelope"', content_type="application/json"
                ),
                exchange=f"{prefix}.commands",
                routing_key="echo",
            )
        result = transport.call("echo", Envelope.new("echo", {"n": 1}), timeout=5)
        [letter] = DeadLetters(URL, f"{prefix}.echo.commands").peek()
    finally:
        transport.close()
        delete_topology(prefix)

    assert result == {"n": 1}
    assert letter.reason == "malformed request: 'not an envelope'"
