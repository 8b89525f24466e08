"""The bus-transport contract on the real RabbitMQ, batches of requests over
it, and an unreachable broker."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import pytest
from kombu.connection import Connection

from ordersys import InfrastructureUnavailable, RequestTimeout
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

    def elsewhere(self, transport: Transport) -> Transport:
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


@pytest.fixture
def prefix() -> Iterator[str]:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    yield prefix
    delete_topology(prefix)


@pytest.fixture
def apart(prefix: str) -> Iterator[tuple[KombuTransport, KombuTransport]]:
    """A server and a caller that reach each other through RabbitMQ only."""
    server, caller = (
        KombuTransport(URL, prefix=prefix),
        KombuTransport(URL, prefix=prefix),
    )
    yield server, caller
    caller.close()
    server.close()


def test_a_batch_to_an_unreachable_broker_has_each_request_unavailable() -> None:
    transport = KombuTransport("amqp://guest:guest@127.0.0.1:1//")
    requests = [("orders", Envelope.new("order.get", {"n": n})) for n in range(3)]

    outcomes = transport.call_many(requests, timeout=1)

    assert len(outcomes) == 3
    for outcome in outcomes:
        assert isinstance(outcome, InfrastructureUnavailable)
        assert "127.0.0.1:1//" in str(outcome)


def test_a_service_served_here_is_answered_with_the_broker_away() -> None:
    transport = KombuTransport("amqp://guest:guest@127.0.0.1:1//")
    transport.serve("echo", lambda e: e.body["n"])
    try:
        single = transport.call("echo", Envelope.new("echo", {"n": 1}), timeout=1)
        batch = transport.call_many(
            [
                ("echo", Envelope.new("echo", {"n": 2})),
                ("elsewhere", Envelope.new("x.y", {})),
            ],
            timeout=1,
        )
    finally:
        transport.close()

    assert single == 1
    assert batch[0] == 2
    assert isinstance(batch[1], InfrastructureUnavailable)


def test_a_batch_mixes_services_served_here_and_elsewhere_in_order(
    apart: tuple[KombuTransport, KombuTransport],
) -> None:
    server, caller = apart
    server.serve("there", lambda e: ["there", e.body["n"], threading.get_ident()])
    caller.serve("here", lambda e: ["here", e.body["n"], threading.get_ident()])
    requests = [
        ("here" if n % 3 == 0 else "there", Envelope.new("look", {"n": n}))
        for n in range(12)
    ]

    outcomes = caller.call_many(requests, timeout=10)

    assert [(where, n) for where, n, _ in outcomes] == [
        ("here" if n % 3 == 0 else "there", n) for n in range(12)
    ]
    threads = {
        where: {thread for w, _, thread in outcomes if w == where}
        for where in ("here", "there")
    }
    assert threads["here"] == {threading.get_ident()}
    assert threading.get_ident() not in threads["there"]


def test_a_slow_request_times_out_and_its_late_reply_is_dropped_not_misdelivered(
    apart: tuple[KombuTransport, KombuTransport],
) -> None:
    server, caller = apart
    server.serve("fast", lambda e: e.body["n"])

    def slow(envelope: Envelope) -> int:
        time.sleep(1.0)
        return int(envelope.body["n"])

    server.serve("slow", slow)
    first = caller.call_many(
        [
            ("fast", Envelope.new("n", {"n": 1})),
            ("slow", Envelope.new("n", {"n": 2})),
            ("fast", Envelope.new("n", {"n": 3})),
        ],
        timeout=0.5,
    )
    time.sleep(1.0)  # the slow reply arrives meanwhile, to nobody
    second = caller.call_many(
        [("fast", Envelope.new("n", {"n": 4})), ("fast", Envelope.new("n", {"n": 5}))],
        timeout=5,
    )

    assert first[0] == 1
    assert isinstance(first[1], RequestTimeout)
    assert "slow did not reply to n within 0.5s" in str(first[1])
    assert first[2] == 3
    assert second == [4, 5]


def test_requests_of_a_batch_taken_up_after_their_caller_gave_up_are_dropped(
    prefix: str, apart: tuple[KombuTransport, KombuTransport]
) -> None:
    server, caller = apart
    handled: list[int] = []

    def slow(envelope: Envelope) -> int:
        handled.append(envelope.body["n"])
        time.sleep(0.8)
        return int(envelope.body["n"])

    server.serve("slow", slow)
    outcomes = caller.call_many(
        [("slow", Envelope.new("slow", {"n": n})) for n in range(3)], timeout=0.5
    )
    again = caller.call("slow", Envelope.new("slow", {"n": 9}), timeout=10)

    assert all(isinstance(outcome, RequestTimeout) for outcome in outcomes)
    assert again == 9
    assert handled == [0, 9]  # 1 and 2 were queued behind 0 past their deadline
    with Connection(URL) as connection:
        dlq = f"{prefix}.slow.commands.dlq"
        _, depth, _ = connection.default_channel.queue_declare(dlq, passive=True)
    assert depth == 0


def rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", *args], check=True, capture_output=True)


@pytest.fixture
def vhost() -> Iterator[str]:
    name = f"ordersys-test-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", name)
    rabbitmqctl("set_permissions", "-p", name, "guest", ".*", ".*", ".*")
    yield name
    rabbitmqctl("delete_vhost", name)


def test_a_batch_waiting_on_a_dropped_connection_is_unavailable_then_reconnects(
    vhost: str,
) -> None:
    url = f"amqp://guest:guest@127.0.0.1:5672/{vhost}"
    server, caller = KombuTransport(url), KombuTransport(url)
    taken_up = threading.Event()

    def slow(envelope: Envelope) -> int:
        taken_up.set()
        time.sleep(4.0)  # rabbitmqctl takes its time to start
        return int(envelope.body["n"])

    server.serve("slow", slow)
    server.serve("echo", lambda e: e.body["n"])
    outcomes: list[object] = []
    waiting = threading.Thread(
        target=lambda: outcomes.extend(
            caller.call_many(
                [("slow", Envelope.new("slow", {"n": n})) for n in range(2)], 20
            )
        )
    )
    waiting.start()
    assert taken_up.wait(10)
    rabbitmqctl("close_all_connections", "--vhost", vhost, "fault injection")
    waiting.join()
    recovered: list[object] = []
    for _ in range(50):  # the server's consumer reconnects in its own time
        recovered = caller.call_many(
            [("echo", Envelope.new("echo", {"n": n})) for n in range(3)], 2
        )
        if recovered == [0, 1, 2]:
            break
        time.sleep(0.1)
    caller.close()
    server.close()

    assert len(outcomes) == 2, outcomes
    assert all(isinstance(o, InfrastructureUnavailable) for o in outcomes), outcomes
    assert recovered == [0, 1, 2]
