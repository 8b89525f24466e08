"""Fixtures shared by the whole suite.

Integration tests run against the real servers named by the ``ORDERSYS_*``
settings (PostgreSQL, RabbitMQ, Redis on localhost by default). Each test that
asks for ``pg_settings`` gets a schema of its own in the ``ordersys_test``
database, dropped afterwards, so tests never see each other's tables.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from psycopg import sql

from ordersys.persistence.database import connect, ensure_database
from ordersys.settings import Settings, load_settings

TEST_DATABASE = "ordersys_test"


@pytest.fixture
def memory_settings() -> Settings:
    """Embedded mode: events in memory, nothing to start."""
    return load_settings({"persistence": "memory"})


@pytest.fixture
def pg_settings() -> Iterator[Settings]:
    """PostgreSQL settings whose events live in a fresh schema, dropped afterwards."""
    schema = f"test_{uuid.uuid4().hex[:12]}"
    settings = load_settings(
        {"postgres_dbname": TEST_DATABASE, "postgres_schema": schema}
    )
    ensure_database(settings)
    yield settings
    with connect(settings, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )
