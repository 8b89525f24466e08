"""`ordersys up` runs every service in a process of its own; `ordersys demo`
places orders through them; Ctrl-C stops everything."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ordersys.settings import Settings
from ordersys.shop.services import SERVICES
from tests.integration.test_transport_rabbitmq import delete_topology

ROOT = Path(__file__).resolve().parents[2]
COMMAND = [sys.executable, "-m", "ordersys.shop.cli"]


@pytest.fixture
def environment(pg_settings: Settings) -> Iterator[dict[str, str]]:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    yield {
        **os.environ,
        "ORDERSYS_POSTGRES_DBNAME": "ordersys_test",
        "ORDERSYS_POSTGRES_SCHEMA": pg_settings.postgres_schema,
        "ORDERSYS_MESSAGING_PREFIX": prefix,
        "ORDERSYS_PAYMENT_DECLINE_RATE": "0.3",
        "ORDERSYS_GATEWAY_PORT": "0",
    }
    delete_topology(prefix)


@pytest.fixture
def up(environment: dict[str, str]) -> Iterator[subprocess.Popen[str]]:
    """`ordersys up` in a process group of its own, always stopped afterwards."""
    process = subprocess.Popen(
        [*COMMAND, "up"],
        cwd=ROOT,
        env=environment,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    yield process
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class Output:
    """The lines a process prints, read by one thread, waited for with a bound."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read, args=(process,), daemon=True).start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def until(self, marker: str, within: float) -> list[str]:
        """The lines up to one containing ``marker`` (or to the end)."""
        seen: list[str] = []
        while (line := self.lines.get(timeout=within)) is not None:
            seen.append(line)
            if marker in line:
                break
        return seen


def test_up_then_demo_then_ctrl_c(
    up: subprocess.Popen[str], environment: dict[str, str]
) -> None:
    output = Output(up)
    started = output.until("all services ready", within=90)
    demo = subprocess.run(
        [*COMMAND, "demo", "--orders", "8"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    up.send_signal(signal.SIGINT)
    stopped = output.until("all services stopped", within=60)
    up.wait(timeout=30)

    assert started[-1] == f"all services ready: {', '.join(SERVICES)}\n"
    assert sum(" ready, serving " in line for line in started) == len(SERVICES)
    assert demo.returncode == 0, demo.stderr
    *_, summary, figures = demo.stdout.strip().splitlines()
    assert summary.startswith("8 orders: ")
    assert figures.startswith("notifications sent to the customer: 8; analytics: ")
    assert up.returncode == 0
    assert stopped[-1] == "all services stopped\n"
