"""Outages: a worker that cannot reach a server waits with a bounded backoff,
says so once per outage, and its work is not held against the message."""

from __future__ import annotations

import logging
import threading

import psycopg
import pytest
from eventsourcing.persistence import OperationalError
from kombu.exceptions import OperationalError as KombuOperationalError
from prometheus_client import CollectorRegistry
from psycopg_pool import PoolClosed
from redis.exceptions import ConnectionError as RedisConnectionError

from ordersys import InfrastructureUnavailable, InvalidInput, load_settings
from ordersys.commands import CommandBus
from ordersys.observability.metrics import ServiceCollector
from ordersys.outages import Outages, server_of
from ordersys.processes import BusSender, ProcessRunner
from tests.unit.bookings import Booking, Bookings, HoldExpiry, HoldSeats, SeatsService


def closed_pool() -> OperationalError:
    """What eventsourcing raises for a pool its owner closed: not an outage."""
    try:
        raise PoolClosed("the pool is closed")
    except PoolClosed as e:
        try:
            raise OperationalError(str(e)) from e
        except OperationalError as wrapped:
            return wrapped


DOWN = InfrastructureUnavailable("PostgreSQL", "127.0.0.1:5432", "connection refused")


@pytest.mark.parametrize(
    ("error", "server"),
    [
        (DOWN, "PostgreSQL"),
        (psycopg.OperationalError("server closed the connection"), "PostgreSQL"),
        (OperationalError("terminating connection"), "PostgreSQL"),
        (KombuOperationalError("[Errno 111] Connection refused"), "RabbitMQ"),
        (ConnectionResetError("reset by peer"), "RabbitMQ"),
        (RedisConnectionError("Connection refused"), "Redis"),
        (closed_pool(), None),
        (InvalidInput("no such field"), None),
        (ValueError("a bug"), None),
    ],
)
def test_an_error_is_an_outage_of_its_server_or_none(
    error: BaseException, server: str | None
) -> None:
    assert server_of(error) == server


def test_waits_double_up_to_the_longest_and_start_again_after_the_outage() -> None:
    outages = Outages("relay:orders", first_wait=0.1, longest_wait=0.5)

    waits = [outages.noticed(DOWN) for _ in range(5)]
    outages.over()

    assert waits == [0.1, 0.2, 0.4, 0.5, 0.5]
    assert outages.noticed(DOWN) == 0.1


def test_an_outage_is_logged_once_when_it_begins_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outages = Outages("relay:orders", first_wait=0.0)
    caplog.set_level(logging.INFO, "ordersys.outages")
    stopping = threading.Event()

    for _ in range(10):
        outages.wait(DOWN, stopping)
    assert outages.down.keys() == {"PostgreSQL"}
    outages.over()
    outages.over()

    assert [r.getMessage().split(" after ")[0] for r in caplog.records] == [
        "relay:orders: waiting for PostgreSQL at 127.0.0.1:5432: connection refused",
        "relay:orders: PostgreSQL is back",
    ]
    assert outages.down == {}
    assert outages.outages == {"PostgreSQL": 1}


def test_an_attempt_that_meets_an_outage_returns_none_and_other_errors_raise() -> None:
    outages = Outages("projection orders", first_wait=0.0)
    stopping = threading.Event()
    results = iter([DOWN, DOWN, 7])

    def step() -> int:
        result = next(results)
        if isinstance(result, Exception):
            raise result
        return result

    def bug() -> int:
        raise ValueError("a bug")

    assert [outages.attempt(step, stopping) for _ in range(3)] == [None, None, 7]
    assert outages.down == {}
    with pytest.raises(ValueError, match="a bug"):
        outages.attempt(bug, stopping)


def test_a_command_whose_server_is_down_is_sent_again_once_it_is_back() -> None:
    settings = load_settings({"persistence": "memory"})
    bookings, expiry, seats = Bookings(settings), HoldExpiry(settings), SeatsService()
    outage = {"rounds": 3 * 5}  # three times the attempts a failure gets

    def hold_once_back(command: HoldSeats) -> object:
        if outage["rounds"]:
            outage["rounds"] -= 1
            raise InfrastructureUnavailable("RabbitMQ", "127.0.0.1:5672", "down")
        return seats.hold(command)

    bus = CommandBus()
    bus.register(HoldSeats, hold_once_back)
    runner = ProcessRunner(expiry, [bookings], BusSender(bus))
    booking = Booking("concert")
    bookings.write(booking)

    raised = 0
    while True:
        try:
            runner.run_until_idle()
        except InfrastructureUnavailable:
            raised += 1
            continue
        break

    assert raised == 15
    assert seats.handled == [("hold", str(booking.id))]
    assert expiry.parked() == []


class Relay:
    """A worker as the metrics see it: something with ``outages``."""

    def __init__(self) -> None:
        self.outages = Outages("relay:orders", first_wait=0.0)


def test_a_worker_waiting_for_a_server_shows_in_its_service_metrics() -> None:
    relay = Relay()
    registry = CollectorRegistry()
    registry.register(ServiceCollector([], [relay]))
    labels = {"worker": "relay:orders", "server": "PostgreSQL"}

    relay.outages.noticed(DOWN)
    waiting = registry.get_sample_value("ordersys_worker_waiting", labels)
    relay.outages.over()

    assert waiting == 1
    assert registry.get_sample_value("ordersys_worker_waiting", labels) == 0
    assert registry.get_sample_value("ordersys_worker_outages_total", labels) == 1
