"""Concurrent requests' work, sent together: what a burst of requests hands in
during one turn of the event loop goes out in one call, and each caller gets
its own outcome. The gateway's commands go this way over RabbitMQ."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from ordersys.errors import Conflict
from ordersys.shop.gateway.backend import Backend
from ordersys.shop.gateway.gathering import Gathering
from ordersys.transport.rabbitmq import KombuTransport
from tests.integration.test_transport_rabbitmq import URL, Together, delete_topology


class Recorded:
    """A send that notes each batch and answers each item with its double,
    or a ValueError for a negative one."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    async def __call__(self, items: list[int]) -> list[Any]:
        self.batches.append(items)
        return [n * 2 if n >= 0 else ValueError(f"{n} is negative") for n in items]


def test_items_handed_in_during_one_turn_go_out_together() -> None:
    # Given a gathering, when three callers hand in an item at once, and a
    # fourth after their outcomes came back
    send = Recorded()
    gathering = Gathering(send)

    async def burst() -> tuple[list[Any], Any]:
        first = await asyncio.gather(
            *(gathering(n) for n in (1, -2, 3)), return_exceptions=True
        )
        return first, await gathering(4)

    outcomes, later = asyncio.run(burst())

    # Then the three went in one batch, each with its own outcome, and the
    # fourth in a batch of its own
    assert send.batches == [[1, -2, 3], [4]]
    assert outcomes[0] == 2
    assert outcomes[2] == 6
    assert isinstance(outcomes[1], ValueError)
    assert later == 8


def test_a_send_that_fails_fails_each_caller_of_its_batch_alone() -> None:
    async def broken(items: list[int]) -> list[Any]:
        raise ConnectionError("down")

    async def burst() -> list[Any]:
        gathering = Gathering(broken)
        return await asyncio.gather(
            *(gathering(n) for n in (1, 2)), return_exceptions=True
        )

    assert [type(outcome) for outcome in asyncio.run(burst())] == [ConnectionError] * 2


@pytest.fixture
def apart() -> Iterator[tuple[KombuTransport, KombuTransport]]:
    """A service's transport and the gateway's, apart but for RabbitMQ."""
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    service, gateway = (KombuTransport(URL, prefix=prefix) for _ in range(2))
    yield service, gateway
    gateway.close()
    service.close()
    delete_topology(prefix)


def test_the_commands_of_concurrent_requests_travel_as_one_message(
    apart: tuple[KombuTransport, KombuTransport],
) -> None:
    # Given a service over RabbitMQ that answers what it is handed together,
    # and a gateway's backend
    together = Together()
    apart[0].serve("together", together)
    backend = Backend(apart[1], timeout=10)

    # When four requests send a command at once, one of which is refused
    async def burst() -> list[Any]:
        commands = (backend.command("together.n", f"r{n}", n=n) for n in (1, 2, -3, 4))
        return await asyncio.gather(*commands, return_exceptions=True)

    try:
        outcomes = asyncio.run(burst())
        query = asyncio.run(backend.call("together.n", "q", n=5))
    finally:
        backend.close()

    # Then the service was handed the four in one batch, each caller got its
    # own answer, and a query went alone
    assert together.batches == [[1, 2, -3, 4], [5]]
    assert outcomes[:2] == [10, 20]
    assert isinstance(outcomes[2], Conflict)
    assert outcomes[3] == 40
    assert query == 50
