"""`ordersys teardown` removes a messaging prefix's queues and exchanges and the
system's schemas, once confirmed."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator

import pytest

from ordersys.persistence.database import connect, ensure_schema
from ordersys.settings import Settings
from ordersys.shop.cli import main
from ordersys.transport import Envelope
from ordersys.transport.rabbitmq import KombuTransport
from tests.integration.test_transport_rabbitmq import URL, delete_topology


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers, root.level = handlers, level


@pytest.fixture
def system(pg_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A prefix with a service queue and exchanges declared, and a schema."""
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("ORDERSYS_POSTGRES_DBNAME", "ordersys_test")
    monkeypatch.setenv("ORDERSYS_POSTGRES_SCHEMA", pg_settings.postgres_schema)
    monkeypatch.setenv("ORDERSYS_MESSAGING_PREFIX", prefix)
    ensure_schema(pg_settings, pg_settings.postgres_schema)
    transport = KombuTransport(URL, prefix=prefix)
    transport.serve("things", lambda envelope: {"ok": True})
    transport.call("things", Envelope.new("thing.get", {}), timeout=10)
    transport.close()
    yield prefix
    delete_topology(prefix)


def broker_names(prefix: str) -> list[str]:
    listed = []
    for what in ("queues", "exchanges"):
        listed += subprocess.run(
            ["rabbitmqctl", "-q", f"list_{what}", "name"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
    return [name for name in listed if name.startswith(f"{prefix}.")]


def schema_exists(settings: Settings) -> bool:
    with connect(settings) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_namespace WHERE nspname = %s",
            (settings.postgres_schema,),
        ).fetchone()
    return bool(row and row[0])


def test_teardown_with_yes_removes_the_prefix_and_the_schema(
    system: str, pg_settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    assert broker_names(system)
    assert schema_exists(pg_settings)

    assert main(["teardown", "--yes"]) == 0

    out = capsys.readouterr().out
    assert f"RabbitMQ, prefix {system}: " in out
    assert f"schemas {pg_settings.postgres_schema}" in out
    assert out.splitlines()[-1].startswith("removed ")
    assert broker_names(system) == []
    assert not schema_exists(pg_settings)


def test_without_a_terminal_to_ask_nothing_is_removed_without_yes(
    system: str,
    pg_settings: Settings,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))

    assert main(["teardown"]) == 2

    err = capsys.readouterr().err
    assert err.splitlines()[-1].endswith("Not asked without a terminal: add --yes")
    assert broker_names(system)
    assert schema_exists(pg_settings)
