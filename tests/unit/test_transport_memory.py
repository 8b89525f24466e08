"""The bus-transport contract in process, and topic matching."""

from __future__ import annotations

import pytest

from ordersys.testing.contracts.transport import TransportContract
from ordersys.transport import Transport, topic_matches
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
