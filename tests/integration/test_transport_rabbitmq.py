"""The bus-transport contract on the real RabbitMQ, batches of requests over
it, an unreachable broker, and a service answering its queries concurrently."""

from __future__ import annotations

import logging
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from kombu.connection import Connection

from ordersys import (
    Command,
    CommandBus,
    Conflict,
    InfrastructureUnavailable,
    Query,
    QueryBus,
    RequestTimeout,
)
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


class SlowQuery(Query):
    message_type = "reads.slow"
    n: int


class FastQuery(Query):
    message_type = "reads.fast"
    n: int


class EchoQuery(Query):
    message_type = "reads.echo"
    n: int


class LateQuery(Query):
    message_type = "reads.late"
    n: int


class Write(Command):
    message_type = "reads.write"
    n: int


class Reads:
    """A service with a slow query (it blocks until released, 2 s at most:
    a read waiting for its position), fast ones, and a command; each says
    which thread answered it."""

    def __init__(self) -> None:
        self.commands, self.queries = CommandBus(), QueryBus()
        self.slow_started, self.slow_finished = threading.Event(), threading.Event()
        self.release = threading.Event()
        self.queries.register(SlowQuery, self.slow)
        self.queries.register(FastQuery, lambda q: ["fast", q.n, _thread()])
        self.queries.register(EchoQuery, self.echo)
        self.commands.register(Write, lambda c: ["write", c.n, _thread()])

    def slow(self, query: SlowQuery) -> list[Any]:
        self.slow_started.set()
        self.release.wait(2.0)
        self.slow_finished.set()
        return ["slow", query.n, _thread()]

    @staticmethod
    def echo(query: EchoQuery) -> list[Any]:
        time.sleep((query.n % 5) / 1000)  # replies come back out of order
        return ["echo", query.n, _thread()]


def _thread() -> str:
    return threading.current_thread().name


@pytest.fixture
def reads(apart: tuple[KombuTransport, KombuTransport]) -> Reads:
    server, _ = apart
    service = Reads()
    serve_bus(server, "reads", service.commands, service.queries)
    return service


def in_background(call: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """``call`` run on a thread of its own; its outcome lands in the list."""
    outcome: list[Any] = []
    thread = threading.Thread(target=lambda: outcome.append(call()))
    thread.start()
    return thread, outcome


def test_a_fast_query_is_answered_while_a_slow_one_runs(
    apart: tuple[KombuTransport, KombuTransport], reads: Reads
) -> None:
    _, caller = apart
    arrivals: list[str] = []

    # Given a slow query running in a service
    def slow() -> Any:
        reply = caller.call("reads", Envelope.new("reads.slow", {"n": 1}), 10)
        arrivals.append("slow")
        return reply

    thread, slow_reply = in_background(slow)
    assert reads.slow_started.wait(10)

    # When a fast query is sent to the same service
    fast_reply = caller.call("reads", Envelope.new("reads.fast", {"n": 2}), 10)
    arrivals.append("fast")
    slow_still_running = not reads.slow_finished.is_set()
    reads.release.set()
    thread.join()

    # Then the fast one's reply arrived while the slow one still ran, first
    assert slow_still_running
    assert arrivals == ["fast", "slow"]
    assert fast_reply[:2] == ["fast", 2]
    assert [reply[:2] for reply in slow_reply] == [["slow", 1]]
    # (each on a thread of the service's pool)
    assert fast_reply[2].startswith("reads-queries")
    assert slow_reply[0][2].startswith("reads-queries")


def test_a_command_is_answered_while_a_slow_query_runs(
    apart: tuple[KombuTransport, KombuTransport], reads: Reads
) -> None:
    _, caller = apart

    # Given a slow query running in a service
    thread, _ = in_background(
        lambda: caller.call("reads", Envelope.new("reads.slow", {"n": 1}), 10)
    )
    assert reads.slow_started.wait(10)

    # When a command is sent to the same service
    written = caller.call("reads", Envelope.new("reads.write", {"n": 3}), 10)
    slow_still_running = not reads.slow_finished.is_set()
    reads.release.set()
    thread.join()

    # Then it is answered while the query runs, on the consuming thread (in order)
    assert slow_still_running
    assert written == ["write", 3, "serve-reads"]


def test_concurrent_replies_each_reach_their_own_request(
    apart: tuple[KombuTransport, KombuTransport], reads: Reads
) -> None:
    _, caller = apart

    # Given 50 queries of two kinds, answered concurrently, out of order
    requests = [
        ("reads", Envelope.new("reads.echo" if n % 2 else "reads.fast", {"n": n}))
        for n in range(50)
    ]

    # When they are sent at once
    outcomes = caller.call_many(requests, timeout=20)

    # Then each is answered with its own payload
    assert [outcome[:2] for outcome in outcomes] == [
        ["echo" if n % 2 else "fast", n] for n in range(50)
    ]
    assert all(outcome[2].startswith("reads-queries") for outcome in outcomes)


def test_a_stopping_service_answers_the_query_it_runs_without_a_traceback(
    apart: tuple[KombuTransport, KombuTransport],
    reads: Reads,
    caplog: pytest.LogCaptureFixture,
) -> None:
    server, caller = apart

    # Given a slow query running in a service (nothing releases it: 2 s)
    thread, reply = in_background(
        lambda: caller.call("reads", Envelope.new("reads.slow", {"n": 1}), 10)
    )
    assert reads.slow_started.wait(10)

    # When the service stops meanwhile
    with caplog.at_level(logging.WARNING):
        server.close()
        finished_before_stopped = reads.slow_finished.is_set()
        thread.join()

    # Then it stopped once the query was done, answered, and nothing went wrong
    assert finished_before_stopped
    assert [r[:2] for r in reply] == [["slow", 1]]
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_a_query_waiting_for_a_thread_past_its_callers_deadline_is_dropped(
    prefix: str,
) -> None:
    # Given a service with one thread for queries, taken by a slow one
    server, caller = (
        KombuTransport(URL, prefix=prefix, request_concurrency=1),
        KombuTransport(URL, prefix=prefix),
    )
    reads = Reads()
    handled: list[int] = []
    reads.queries.register(LateQuery, lambda q: handled.append(q.n))
    serve_bus(server, "reads", reads.commands, reads.queries)
    thread, _ = in_background(
        lambda: caller.call("reads", Envelope.new("reads.slow", {"n": 1}), 10)
    )
    assert reads.slow_started.wait(10)

    # When a query waits for that thread longer than its caller does
    try:
        with pytest.raises(RequestTimeout):
            caller.call("reads", Envelope.new("reads.late", {"n": 2}), timeout=0.5)
        reads.release.set()
        thread.join()
        again = caller.call("reads", Envelope.new("reads.late", {"n": 3}), 10)
    finally:
        caller.close()
        server.close()

    # Then it is dropped unanswered; the next one is answered
    assert again is None
    assert handled == [3]


class Together:
    """A request handler that answers several requests at once, and notes
    how many it was given each time."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __call__(self, envelope: Envelope) -> int:
        return self.many([envelope])[0]["result"]  # type: ignore[no-any-return]

    def many(self, envelopes: list[Envelope]) -> list[dict[str, Any]]:
        self.batches.append([e.body["n"] for e in envelopes])
        return [
            {"result": e.body["n"] * 10}
            if e.body["n"] >= 0
            else {"error": {"code": "conflict", "message": "negative"}}
            for e in envelopes
        ]


@pytest.fixture
def together(apart: tuple[KombuTransport, KombuTransport]) -> Together:
    """A ``Together`` handler served by the server of ``apart``."""
    handler = Together()
    apart[0].serve("together", handler)
    return handler


def test_commands_sent_together_travel_as_one_message_and_are_answered_together(
    apart: tuple[KombuTransport, KombuTransport], together: Together
) -> None:
    caller, handler = apart[1], together

    # When five commands, one of which is refused, are sent at once
    outcomes = caller.call_many(
        [("together", Envelope.new("together.n", {"n": n})) for n in (1, 2, -3, 4, 5)],
        timeout=10,
        commands=True,
    )

    # Then the service was handed them in one batch, and each has its answer
    assert handler.batches == [[1, 2, -3, 4, 5]]
    assert outcomes[:2] == [10, 20]
    assert isinstance(outcomes[2], Conflict)
    assert outcomes[3:] == [40, 50]


def test_requests_delivered_together_are_handed_over_together(
    apart: tuple[KombuTransport, KombuTransport], together: Together
) -> None:
    caller, handler = apart[1], together
    requests = [("together", Envelope.new("together.n", {"n": n})) for n in range(40)]

    # When forty requests are sent at once, each as a message of its own
    outcomes = caller.call_many(requests, timeout=10)

    # Then the service answered them in order, in fewer batches than messages
    assert outcomes == [n * 10 for n in range(40)]
    assert [n for batch in handler.batches for n in batch] == list(range(40))
    assert len(handler.batches) < 40
