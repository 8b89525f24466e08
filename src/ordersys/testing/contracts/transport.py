"""The bus-transport contract: in process and over RabbitMQ, requests get their
reply or a typed error, and events reach exactly the queues bound to them."""

from __future__ import annotations

import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from ordersys import BusinessRuleViolation, NotFound, RequestTimeout
from ordersys.testing.eventually import eventually
from ordersys.transport import Envelope, Transport


class TransportContract(ABC):
    """Subclass as ``Test...``, implementing :meth:`transport`."""

    @abstractmethod
    def transport(self) -> Transport:
        """A transport with names of its own (tests run side by side)."""

    @pytest.fixture
    def bus(self) -> Iterator[Transport]:
        transport = self.transport()
        yield transport
        transport.close()

    @pytest.fixture
    def name(self) -> str:
        return f"t{uuid.uuid4().hex[:8]}"

    def test_a_request_gets_the_result_of_its_handler(
        self, bus: Transport, name: str
    ) -> None:
        bus.serve(name, lambda e: {"echo": e.body["text"], "type": e.message_type})

        result = bus.call(name, Envelope.new("echo.say", {"text": "hi"}), timeout=5)

        assert result == {"echo": "hi", "type": "echo.say"}

    def test_a_typed_error_reaches_the_caller_as_the_same_type(
        self, bus: Transport, name: str
    ) -> None:
        def refuse(envelope: Envelope) -> None:
            if envelope.body["n"] == 0:
                raise NotFound("no such thing", thing=0)
            raise BusinessRuleViolation("not allowed")

        bus.serve(name, refuse)

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

    def test_headers_travel_with_a_request(self, bus: Transport, name: str) -> None:
        bus.serve(name, lambda e: e.headers.get("correlation_id"))

        envelope = Envelope.new("echo.headers", {}, correlation_id="corr-1")

        assert bus.call(name, envelope, timeout=5) == "corr-1"

    def test_a_handler_passes_its_correlation_and_trace_context_on(
        self, bus: Transport, name: str
    ) -> None:
        bus.serve(
            f"{name}b",
            lambda e: {k: e.headers[k] for k in ("correlation_id", "traceparent")},
        )
        bus.serve(
            f"{name}a",
            lambda _: bus.call(f"{name}b", Envelope.new("b.look", {}), timeout=5),
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
        self, bus: Transport, name: str
    ) -> None:
        bus.serve(name, lambda e: e.body["n"] * 2)
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
