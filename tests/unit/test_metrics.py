"""Metrics: a bus counts and times what it handles; projections report lag."""

from __future__ import annotations

import socket
import urllib.request
from decimal import Decimal

import pytest
from prometheus_client import CollectorRegistry

from ordersys import Command, CommandBus, InvalidInput, NotFound, Query, QueryBus
from ordersys.observability.metrics import (
    ProjectionCollector,
    metrics_middleware,
    serve_metrics,
)
from ordersys.projections import ProjectionRunner
from ordersys.settings import Settings
from tests.unit.accounts import Account, Bank
from tests.unit.balances import Balances


class Deposit(Command):
    message_type = "account.deposit"
    amount: int


class Balance(Query):
    message_type = "account.balance"


def test_each_message_is_counted_by_outcome_and_timed() -> None:
    registry = CollectorRegistry()
    measure = metrics_middleware(registry)
    commands = CommandBus(middleware=[measure])
    commands.register(Deposit, lambda c: c.amount)
    queries = QueryBus(middleware=[measure])

    def missing(query: Balance) -> None:
        raise NotFound("no account")

    queries.register(Balance, missing)

    commands.dispatch(Deposit(amount=1))
    commands.dispatch(Deposit(amount=2))
    with pytest.raises(NotFound):
        queries.dispatch(Balance())

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    ok = {"kind": "command", "message_type": "account.deposit", "outcome": "ok"}
    refused = {
        "kind": "query",
        "message_type": "account.balance",
        "outcome": "not_found",
    }
    assert sample("ordersys_messages_total", **ok) == 2
    assert sample("ordersys_messages_total", **refused) == 1
    timed = {"kind": "command", "message_type": "account.deposit"}
    assert sample("ordersys_message_seconds_count", **timed) == 2


def test_projection_lag_is_read_when_scraped_over_http(
    memory_settings: Settings,
) -> None:
    bank = Bank(memory_settings)
    for owner in ("ann", "bob", "cy"):
        bank.write(Account(owner, Decimal(0)))
    runner = ProjectionRunner(Balances, bank)
    runner.run_once()
    registry = CollectorRegistry()
    registry.register(ProjectionCollector([runner]))
    bank.write(Account("dee", Decimal(0)))
    server = serve_metrics(0, registry=registry)

    try:
        url = f"http://127.0.0.1:{server.port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            page = response.read().decode()
    finally:
        server.stop()

    labels = 'application="Bank",projection="balances"'
    assert f"ordersys_projection_lag{{{labels}}} 1.0" in page
    assert f"ordersys_projection_position{{{labels}}} 3.0" in page


def test_a_metrics_port_in_use_is_refused_naming_the_setting() -> None:
    # Given a port something listens on already
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        # When the metrics are to be served there, then the error says which
        # setting to change, not a traceback of the bind
        with pytest.raises(InvalidInput, match="ORDERSYS_METRICS_PORT") as refused:
            serve_metrics(port, registry=CollectorRegistry())

    assert f"127.0.0.1:{port}" in refused.value.message
    assert refused.value.details == {"field": "metrics_port"}
