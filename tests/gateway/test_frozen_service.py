"""A service that is there but does not answer: the orders service in a
process of its own (``ordersys run orders``), frozen with SIGSTOP and thawed
with SIGCONT. Readiness tells the truth: it answers 503 naming the frozen
service (its queue still has a consumer: only a ping tells), and 200 once it
answers again.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from psycopg import sql

from ordersys.persistence.database import connect, ensure_database
from ordersys.service import Service
from ordersys.shop.gateway.health import PING_SECONDS, ping
from ordersys.shop.services import SERVICES
from ordersys.shop.settings import ShopSettings
from ordersys.transport.rabbitmq import KombuTransport
from tests.gateway.conftest import (
    System,
    forget_keys,
    start_gateway,
    system_settings,
)
from tests.integration.test_transport_rabbitmq import URL, delete_topology

ROOT = Path(__file__).parents[2]
PATIENCE = 120.0
"""How long the test waits for something that happens by itself."""


@dataclass
class Frozen:
    system: System
    orders: subprocess.Popen[bytes]


def environment(settings: ShopSettings) -> dict[str, str]:
    """The settings a service process needs to join this system."""
    names = (
        "postgres_dbname",
        "postgres_schema",
        "messaging_prefix",
        "cache_prefix",
        "saga_step_timeout",
        "postgres_pool_size",
        "postgres_max_overflow",
    )
    given = {f"ORDERSYS_{name.upper()}": str(getattr(settings, name)) for name in names}
    return {**os.environ, **given}


def eventually(check: Any, what: str) -> Any:
    """``check()``'s first truthy answer, asked until :data:`PATIENCE` ends."""
    deadline = time.monotonic() + PATIENCE
    while not (answer := check()):
        assert time.monotonic() < deadline, f"{what} did not happen"
        time.sleep(0.1)
    return answer


@pytest.fixture(scope="module")
def frozen(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Frozen]:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    schema = f"test_{uuid.uuid4().hex[:12]}"
    settings = system_settings(schema, prefix)
    ensure_database(settings)
    transport = KombuTransport(URL, prefix=prefix)
    started: list[Service] = []
    log = tmp_path_factory.mktemp("orders") / "orders.log"
    with log.open("wb") as output:
        orders = subprocess.Popen(
            [sys.executable, "-m", "ordersys.shop.cli", "run", "orders"],
            cwd=ROOT,
            env=environment(settings),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    try:
        for name, build in SERVICES.items():
            if name not in ("gateway", "orders"):
                service = build(settings, KombuTransport(URL, prefix=prefix))
                service.start()
                started.append(service)
        eventually(lambda: ping(transport, "orders") == "ok", "orders answering")
        gateway = start_gateway(settings)
        started.append(gateway)
        yield Frozen(System(settings, gateway, transport), orders)
    finally:
        orders.send_signal(signal.SIGCONT)
        orders.terminate()
        orders.wait(30)
        print(log.read_text()[-2000:])
        transport.close()
        for service in reversed(started):
            service.stop()
        delete_topology(prefix)
        forget_keys(settings)
        with connect(settings, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(schema)
                )
            )


@contextmanager
def stopped(process: subprocess.Popen[bytes]) -> Iterator[None]:
    process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        process.send_signal(signal.SIGCONT)


def test_a_frozen_service_makes_readiness_503_naming_it(frozen: Frozen) -> None:
    client = frozen.system.client()
    ready = client.get("/health/ready")

    with stopped(frozen.orders):
        asked = time.monotonic()
        not_ready = client.get("/health/ready")
        answered = time.monotonic() - asked
    ready_again = eventually(
        lambda: (r := client.get("/health/ready")).status_code == 200 and r,
        "readiness after SIGCONT",
    )

    print(f"\nfrozen orders: 503 after {answered:.2f} s (deadline {PING_SECONDS} s)")
    assert ready.status_code == 200, ready.text
    assert not_ready.status_code == 503
    problem = not_ready.json()
    assert "orders down" in problem["detail"]
    assert problem["checks"]["orders"] == f"down: no answer within {PING_SECONDS} s"
    assert {k for k, v in problem["checks"].items() if v != "ok"} == {"orders"}
    assert ready_again.json()["checks"]["orders"] == "ok"
