"""The embedded shop: every service and the gateway in one process, with no
server. Every server address points at a socket of the test's own that counts
the connections made to it; the system must make none.

The demo (``--demo 1``) seeds the products: the catalog's own commands, in the
running process, as ``ordersys up --embedded --demo 1`` does for a newcomer.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

READY_SECONDS = 60
ORDER_SECONDS = 30


class CountingServer:
    """A listening socket that accepts connections, counts and closes them."""

    def __init__(self) -> None:
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.accepted = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.socket.accept()
            except OSError:
                return
            self.accepted += 1
            connection.close()

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def servers() -> Iterator[dict[str, CountingServer]]:
    counting = {name: CountingServer() for name in ("postgres", "rabbitmq", "redis")}
    yield counting
    for server in counting.values():
        server.close()


class Shop:
    """``python -m ordersys.shop.embedded`` as a child process."""

    def __init__(self, data_dir: Path, servers: dict[str, CountingServer]) -> None:
        self.data_dir = data_dir
        self.env = {
            **os.environ,
            "ORDERSYS_POSTGRES_PORT": str(servers["postgres"].port),
            "ORDERSYS_RABBITMQ_URL": (
                f"amqp://guest:guest@127.0.0.1:{servers['rabbitmq'].port}//"
            ),
            "ORDERSYS_REDIS_URL": f"redis://127.0.0.1:{servers['redis'].port}/0",
        }
        self.process: subprocess.Popen[str] | None = None
        self.output: list[str] = []

    def start(self, *options: str) -> str:
        """Start it and return the API's URL once it says it is ready."""
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ordersys.shop.embedded",
                "--data-dir",
                str(self.data_dir),
                "--port",
                "0",
                *options,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=self.env,
        )
        found: list[str] = []
        ready = threading.Event()
        threading.Thread(target=self._read, args=(found, ready), daemon=True).start()
        if not ready.wait(READY_SECONDS):
            self.process.kill()
            pytest.fail("not ready:\n" + "\n".join(self.output[-30:]))
        return found[0]

    def _read(self, found: list[str], ready: threading.Event) -> None:
        assert self.process is not None
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line.rstrip())
            if line.startswith("ordersys embedded: API at "):
                found.append(line.split()[4])
                ready.set()

    def stop(self) -> int:
        """SIGTERM, and its exit status."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(30)

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def shop(tmp_path: Path, servers: dict[str, CountingServer]) -> Iterator[Shop]:
    running = Shop(tmp_path / "data", servers)
    yield running
    running.kill()


def log_in(api: httpx.Client, email: str, password: str) -> dict[str, str]:
    reply = api.post("/auth/login", json={"email": email, "password": password})
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['access_token']}"}


def a_product_in_stock(api: httpx.Client) -> dict[str, Any]:
    """A product the demo seeded, once the catalog's read model shows it."""
    deadline = time.monotonic() + ORDER_SECONDS
    while time.monotonic() < deadline:
        products = api.get("/products").json()["products"]
        in_stock = [p for p in products if p["available"] > 0]
        if in_stock:
            return dict(in_stock[0])
        time.sleep(0.1)
    pytest.fail("the demo's products never showed")


def final_order(api: httpx.Client, order_id: str, headers: dict[str, str]) -> Any:
    deadline = time.monotonic() + ORDER_SECONDS
    while time.monotonic() < deadline:
        order = api.get(f"/orders/{order_id}", headers=headers).json()
        if order["status"] in ("CONFIRMED", "CANCELLED"):
            return order
        time.sleep(0.05)
    pytest.fail(f"order {order_id} did not finish")


def test_an_order_is_confirmed_and_outlives_a_restart_with_no_server(
    shop: Shop, servers: dict[str, CountingServer]
) -> None:
    email, password = f"ann-{uuid.uuid4().hex[:8]}@example.com", "ann's password"
    url = shop.start("--demo", "1")
    with httpx.Client(base_url=url, timeout=10) as api:
        registered = api.post(
            "/auth/register", json={"email": email, "name": "Ann", "password": password}
        )
        headers = log_in(api, email, password)
        product = a_product_in_stock(api)
        placed = api.post(
            "/orders",
            json={"items": [{"product_id": product["product_id"], "quantity": 1}]},
            headers=headers,
        )
        order_id = placed.json()["id"]
        submitted = api.post(f"/orders/{order_id}/submit", headers=headers)
        confirmed = final_order(api, order_id, headers)
    stopped = shop.stop()

    url = shop.start()
    with httpx.Client(base_url=url, timeout=10) as api:
        after_restart = api.get(
            f"/orders/{order_id}", headers=log_in(api, email, password)
        )
    stopped_again = shop.stop()

    assert registered.status_code == 201, registered.text
    assert placed.status_code == 201, placed.text
    assert submitted.status_code == 202, submitted.text
    assert confirmed["status"] == "CONFIRMED", confirmed
    assert confirmed["lines"] == [
        {
            "product_id": product["product_id"],
            "quantity": 1,
            "unit_price_cents": product["price_cents"],
        }
    ]
    assert (stopped, stopped_again) == (0, 0)
    assert after_restart.status_code == 200, after_restart.text
    assert after_restart.json()["status"] == "CONFIRMED"
    assert after_restart.json()["total_cents"] == product["price_cents"]
    assert {name: s.accepted for name, s in servers.items()} == {
        "postgres": 0,
        "rabbitmq": 0,
        "redis": 0,
    }
