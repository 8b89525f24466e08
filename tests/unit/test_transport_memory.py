"""The bus-transport contract in process, topic matching, and which requests
a transport may answer concurrently."""

from __future__ import annotations

import pytest

from ordersys import Command, CommandBus, Query, QueryBus
from ordersys.testing.contracts.transport import TransportContract
from ordersys.transport import (
    BusRequests,
    Envelope,
    Transport,
    answers_concurrently,
    ping_type,
    serve_bus,
    topic_matches,
)
from ordersys.transport.memory import MemoryTransport


class TestMemoryTransport(TransportContract):
    def transport(self) -> Transport:
        return MemoryTransport()


@pytest.mark.parametrize(
    ("pattern", "key", "matches"),
    [
        ("orders.OrderPlaced", "orders.OrderPlaced", True),
        ("orders.*", "orders.OrderPlaced", True),
        ("orders.*", "orders.a.b", False),
        ("orders.#", "orders", True),
        ("orders.#", "orders.a.b", True),
        ("#", "anything.at.all", True),
        ("*.OrderPlaced", "orders.OrderPlaced", True),
        ("*.OrderPlaced", "OrderPlaced", False),
        ("#.Placed", "a.b.Placed", True),
        ("users.*", "orders.OrderPlaced", False),
    ],
)
def test_topic_patterns_match_like_amqp(pattern: str, key: str, matches: bool) -> None:
    assert topic_matches(pattern, key) is matches


class OpenAccount(Command):
    message_type = "account.open"
    owner: str


class GetAccount(Query):
    message_type = "account.get"
    account_id: int


class CloseAccount(Command):
    message_type = "account.close"


class CountAccounts(Query):
    message_type = "accounts.count"


def test_a_served_bus_lets_its_queries_be_answered_concurrently() -> None:
    # Given a service's command bus and query bus
    commands, queries = CommandBus(), QueryBus()
    commands.register(OpenAccount, lambda c: c.owner)
    queries.register(GetAccount, lambda q: q.account_id)

    # When they are served together, and a handler of each is added afterwards
    handler = BusRequests("accounts", [commands, queries])
    commands.register(CloseAccount, lambda c: None)
    queries.register(CountAccounts, lambda q: 0)

    # Then the queries may be answered concurrently, and the rest in order
    assert answers_concurrently(handler, "account.get")
    assert answers_concurrently(handler, "accounts.count")
    assert not answers_concurrently(handler, "account.open")
    assert not answers_concurrently(handler, "account.close")
    assert not answers_concurrently(handler, ping_type("accounts"))
    assert not answers_concurrently(handler, "account.unknown")


def test_a_plain_handler_is_answered_in_order() -> None:
    # Given a handler that says nothing about concurrency
    def handler(envelope: Envelope) -> None:
        return None

    # Then none of its requests are answered concurrently
    assert not answers_concurrently(handler, "account.get")


def test_the_memory_transport_answers_a_served_query_bus() -> None:
    # Given a query bus served in process
    transport = MemoryTransport()
    queries = QueryBus()
    queries.register(GetAccount, lambda q: {"id": q.account_id})
    serve_bus(transport, "accounts", queries)

    # When it is asked a query
    result = transport.call(
        "accounts", Envelope.new("account.get", {"account_id": 7}), timeout=1
    )

    # Then the query bus answers it
    assert result == {"id": 7}
