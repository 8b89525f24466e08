"""A fresh system per test: its own PostgreSQL schema, RabbitMQ prefix and
Redis key prefix, so tests never see each other's orders."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ordersys.settings import Settings
from tests.integration.test_transport_rabbitmq import delete_topology
from tests.system.system import System


@pytest.fixture
def system(pg_settings: Settings, tmp_path: Path) -> Iterator[System]:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "ORDERSYS_POSTGRES_DBNAME": "ordersys_test",
        "ORDERSYS_POSTGRES_SCHEMA": pg_settings.postgres_schema,
        "ORDERSYS_MESSAGING_PREFIX": prefix,
        "ORDERSYS_CACHE_PREFIX": prefix,
        "ORDERSYS_RPC_TIMEOUT": "2",
        "ORDERSYS_SAGA_STEP_TIMEOUT": "30",
        "ORDERSYS_LOG_LEVEL": "WARNING",
    }
    running = System(env, tmp_path / "services.log")
    yield running
    running.stop()
    delete_topology(prefix)
    print((tmp_path / "services.log").read_text()[-5000:])
