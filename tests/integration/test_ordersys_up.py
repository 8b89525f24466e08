"""`ordersys up` runs every service in a process of its own; `ordersys demo`
places orders through them; Ctrl-C stops everything."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ordersys.settings import Settings
from tests.integration.test_transport_rabbitmq import delete_topology

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def environment(pg_settings: Settings) -> Iterator[dict[str, str]]:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    yield {
        **os.environ,
        "ORDERSYS_POSTGRES_DBNAME": "ordersys_test",
        "ORDERSYS_POSTGRES_SCHEMA": pg_settings.postgres_schema,
        "ORDERSYS_MESSAGING_PREFIX": prefix,
        "ORDERSYS_PAYMENT_DECLINE_RATE": "0.3",
    }
    delete_topology(prefix)


def test_up_then_demo_then_ctrl_c(environment: dict[str, str]) -> None:
    command = [sys.executable, "-m", "ordersys.cli"]
    up = subprocess.Popen(
        [*command, "up"], cwd=ROOT, env=environment, stdout=subprocess.PIPE, text=True
    )
    assert up.stdout is not None
    lines = []
    for line in up.stdout:
        lines.append(line)
        if line.startswith("all services ready"):
            break

    demo = subprocess.run(
        [*command, "demo", "--orders", "8"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    up.send_signal(signal.SIGINT)
    rest, _ = up.communicate(timeout=60)

    assert lines[-1] == "all services ready: users, catalog, payments, orders\n"
    assert demo.returncode == 0, demo.stderr
    summary = demo.stdout.strip().splitlines()[-1]
    assert summary.startswith("8 orders: ")
    assert "confirmed" in summary or "cancelled" in summary
    assert up.returncode == 0
    assert rest.strip().endswith("all services stopped")
