"""The bus-transport contract: in process and over RabbitMQ, requests get their
reply or a typed error, one at a time or in batches, a service served by the
caller's own transport is answered in process, and events reach exactly the
queues bound to them."""

from __future__ import annotations

import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ordersys import BusinessRuleViolation, NotFound, RequestTimeout
from ordersys.testing.eventually import eventually
from ordersys.transport import Envelope, RpcSender, Transport


class TransportContract(ABC):
    """Subclass as ``Test...``, implementing :meth:`transport` (and
    :meth:`elsewhere` for a transport that crosses processes)."""

    @abstractmethod
    def transport(self) -> Transport:
        """A transport with names of its own (tests run side by side)."""

    def elsewhere(self, transport: Transport) -> Transport:
        """A transport that reaches the services of ``transport`` as another
        process would. The default, for a transport inside one process, is
        ``transport`` itself."""
        return transport

    @pytest.fixture
    def bus(self) -> Iterator[Transport]:
        transport = self.transport()
        yield transport
        transport.close()

    @pytest.fixture
    def server(self, bus: Transport) -> Iterator[Transport]:
        """Where the services of most tests are served: ``bus`` calls them
        from elsewhere."""
        transport = self.elsewhere(bus)
        yield transport
        if transport is not bus:
            transport.close()

    @pytest.fixture
    def name(self) -> str:
        return f"t{uuid.uuid4().hex[:8]}"

    def test_a_request_gets_the_result_of_its_handler(
        self, bus: Transport, server: Transport, name: str
    ) -> None:
        server.serve(name, lambda e: {"echo": e.body["text"], "type": e.message_type})

        result = bus.call(name, Envelope.new("echo.say", {"text": "hi"}), timeout=5)

        assert result == {"echo": "hi", "type": "echo.say"}

    def test_a_typed_error_reaches_the_caller_as_the_same_type(
        self, bus: Transport, server: Transport, name: str
    ) -> None:
        def refuse(envelope: Envelope) -> None:
            if envelope.body["n"] == 0:
                raise NotFound("no such thing", thing=0)
            raise BusinessRuleViolation("not allowed")

        server.serve(name, refuse)

        with pytest.raises(NotFound, match="no such thing") as raised:
            bus.call(name, Envelope.new("thing.get", {"n": 0}), timeout=5)
        assert raised.value.details == {"thing": 0}
        with pytest.raises(BusinessRuleViolation):
            bus.call(name, Envelope.new("thing.do", {"n": 1}), timeout=5)

    def test_a_request_to_a_service_nobody_serves_times_out_clearly(
        self, bus: Transport, name: str
    ) -> None:
        with pytest.raises(RequestTimeout, match=f"{name} did not reply to x.y"):
            bus.call(name, Envelope.new("x.y", {}), timeout=0.3)

    def test_headers_travel_with_a_request(
        self, bus: Transport, server: Transport, name: str
    ) -> None:
        server.serve(name, lambda e: e.headers.get("correlation_id"))

        envelope = Envelope.new("echo.headers", {}, correlation_id="corr-1")

        assert bus.call(name, envelope, timeout=5) == "corr-1"

    def test_a_handler_passes_its_correlation_and_trace_context_on(
        self, bus: Transport, server: Transport, name: str
    ) -> None:
        bus.serve(
            f"{name}b",
            lambda e: {k: e.headers[k] for k in ("correlation_id", "traceparent")},
        )
        server.serve(
            f"{name}a",
            lambda _: server.call(f"{name}b", Envelope.new("b.look", {}), timeout=5),
        )
        traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

        seen = bus.call(
            f"{name}a",
            Envelope.new(
                "a.start", {}, correlation_id="order-7", traceparent=traceparent
            ),
            timeout=10,
        )

        assert seen == {"correlation_id": "order-7", "traceparent": traceparent}

    def test_concurrent_callers_each_get_their_own_reply(
        self, bus: Transport, server: Transport, name: str
    ) -> None:
        server.serve(name, lambda e: e.body["n"] * 2)
        results: dict[int, Any] = {}

        def call(n: int) -> None:
            results[n] = bus.call(name, Envelope.new("double", {"n": n}), timeout=10)

        threads = [threading.Thread(target=call, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

        assert results == {n: n * 2 for n in range(8)}

    def test_an_event_reaches_every_queue_bound_to_a_matching_pattern(
        self, bus: Transport, name: str
    ) -> None:
        received: dict[str, list[str]] = {
            "all": [],
            "orders": [],
            "placed": [],
            "users": [],
        }

        def into(queue: str) -> Callable[[Envelope], None]:
            return lambda e: received[queue].append(e.body["id"])

        bus.subscribe(f"{name}.all", [f"{name}.#"], into("all"))
        bus.subscribe(f"{name}.orders", [f"{name}.orders.*"], into("orders"))
        bus.subscribe(f"{name}.placed", [f"{name}.*.OrderPlaced"], into("placed"))
        bus.subscribe(f"{name}.users", [f"{name}.users.*"], into("users"))

        bus.publish(
            f"{name}.orders.OrderPlaced", Envelope.new("OrderPlaced", {"id": "1"})
        )
        bus.publish(
            f"{name}.orders.OrderShipped", Envelope.new("OrderShipped", {"id": "2"})
        )

        assert eventually(
            lambda: len(received["all"]) == 2 and len(received["orders"]) == 2
        )
        assert eventually(lambda: received["placed"] == ["1"])
        assert sorted(received["all"]) == ["1", "2"]
        assert received["users"] == []

    def test_a_batch_of_requests_gets_each_result_in_the_order_sent(
        self, bus: Transport, server: Transport, name: str
    ) -> None:
        server.serve(f"{name}a", lambda e: e.body["n"] * 2)
        server.serve(f"{name}b", lambda e: -e.body["n"])
        requests = [
            (f"{name}{'ab'[n % 2]}", Envelope.new("number.map", {"n": n}))
            for n in range(30)
        ]

        outcomes = bus.call_many(requests, timeout=10)

        assert outcomes == [n * 2 if n % 2 == 0 else -n for n in range(30)]

    def test_a_batch_returns_each_typed_error_as_a_value_among_the_results(
        self, bus: Transport, server: Transport, name: str
    ) -> None:
        def refuse(envelope: Envelope) -> int:
            n = int(envelope.body["n"])
            if n == 1:
                raise NotFound("no such thing", thing=n)
            if n == 2:
                raise BusinessRuleViolation("not allowed")
            return n

        server.serve(name, refuse)

        outcomes = bus.call_many(
            [(name, Envelope.new("thing.get", {"n": n})) for n in range(4)],
            timeout=10,
        )

        assert outcomes[0] == 0
        assert isinstance(outcomes[1], NotFound)
        assert outcomes[1].details == {"thing": 1}
        assert isinstance(outcomes[2], BusinessRuleViolation)
        assert str(outcomes[2]) == "not allowed"
        assert outcomes[3] == 3

    def test_a_request_of_a_batch_that_gets_no_reply_times_out_alone(
        self, bus: Transport, server: Transport, name: str
    ) -> None:
        server.serve(name, lambda e: e.body["n"])
        requests = [
            (name, Envelope.new("echo", {"n": 0})),
            (f"{name}-nobody", Envelope.new("x.y", {})),
            (name, Envelope.new("echo", {"n": 2})),
        ]

        outcomes = bus.call_many(requests, timeout=0.5)

        assert outcomes[0] == 0
        assert isinstance(outcomes[1], RequestTimeout)
        assert f"{name}-nobody did not reply to x.y" in str(outcomes[1])
        assert outcomes[2] == 2

    def test_an_empty_batch_has_no_outcomes(self, bus: Transport) -> None:
        assert bus.call_many([], timeout=1) == []

    def test_a_senders_batch_is_routed_like_its_single_commands(
        self, bus: Transport, server: Transport, name: str
    ) -> None:
        server.serve(name, lambda e: [e.message_type, e.headers["message_id"]])
        sender = RpcSender(bus, timeout=10, routes={"seat": name})
        ids = [uuid.uuid4() for _ in range(3)]

        outcomes = sender.send_many(
            [("seat.hold", {"n": n}, command_id) for n, command_id in enumerate(ids)]
        )

        assert outcomes == [["seat.hold", str(command_id)] for command_id in ids]
        assert sender.send("seat.free", {}, ids[0]) == ["seat.free", str(ids[0])]

    def test_a_service_served_by_the_callers_own_transport_answers_in_process(
        self, bus: Transport, name: str
    ) -> None:
        def look(envelope: Envelope) -> dict[str, Any]:
            if envelope.body.get("refuse"):
                raise NotFound("no such thing", thing=1)
            passed_on = Envelope.new("look.again", {})
            return {
                "thread": threading.get_ident(),
                "correlation_id": passed_on.headers["correlation_id"],
                "traceparent": passed_on.headers.get("traceparent"),
            }

        bus.serve(name, look)
        traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        here = {"thread": threading.get_ident(), "correlation_id": "order-7"}

        def request(**body: Any) -> Envelope:
            return Envelope.new(
                "look", body, correlation_id="order-7", traceparent=traceparent
            )

        single = bus.call(name, request(), timeout=5)
        batch = bus.call_many([(name, request()), (name, request(refuse=1))], 5)
        with pytest.raises(NotFound, match="no such thing"):
            bus.call(name, request(refuse=1), timeout=5)

        first = batch[0]
        assert isinstance(first, dict)
        for seen in (single, first):
            assert {k: seen[k] for k in here} == here
            # The handler's context is the request's trace: the same trace id.
            assert seen["traceparent"].split("-")[1] == traceparent.split("-")[1]
        assert isinstance(batch[1], NotFound)
        assert bus.is_served(name)
