"""The load the reliability suite puts on the system: customers placing
orders through the gateway, and what is checked of them afterwards."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from typing import Any
from uuid import UUID

import httpx

from ordersys.settings import Settings
from ordersys.shop.payments.domain import Payment, payment_id
from ordersys.shop.payments.service import Payments
from tests.system.system import System

PASSWORD = "reliability-suite-pw"


class Load:
    """Customers placing orders through the gateway, each retried with its
    Idempotency-Key until the gateway accepts it (or gives up after
    ``patience`` seconds)."""

    def __init__(
        self,
        system: System,
        products: list[str],
        workers: int = 4,
        patience: float = 60.0,
    ) -> None:
        self.system = system
        self.patience = patience
        self.products = products
        self.accepted: list[str] = []
        self.accepted_at: list[float] = []
        """When each order was accepted (``time.monotonic()``)."""
        self.failures: Counter[str] = Counter()
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._customer, args=(n,), daemon=True)
            for n in range(workers)
        ]
        self._lock = threading.Lock()
        self._turn = 0

    def url(self) -> str:
        """A gateway: with several, each attempt takes the next, so that a
        retry after one went down reaches another."""
        ports = list(self.system.gateway_ports.values()) or [self.system.gateway_port]
        with self._lock:
            self._turn += 1
            return f"http://127.0.0.1:{ports[self._turn % len(ports)]}"

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(120)

    def accepted_since(self, moment: float) -> list[str]:
        """The orders accepted after ``moment`` (``time.monotonic()``)."""
        with self._lock:
            return [
                o
                for o, t in zip(self.accepted, self.accepted_at, strict=True)
                if t > moment
            ]

    def _customer(self, number: int) -> None:
        email = f"load-{number}-{uuid.uuid4().hex[:6]}@example.com"
        token = self._retry(
            lambda c: self._register_and_login(c, email), "register and log in"
        )
        turn = 0
        while not self.stopping.is_set() and token:
            product = self.products[(number + turn) % len(self.products)]
            turn += 1
            key = str(uuid.uuid4())
            body = {"items": [{"product_id": product, "quantity": 1}], "submit": True}
            order = self._retry(
                lambda c, body=body, key=key: self._place(c, token, key, body), "order"
            )
            if order:
                with self._lock:
                    self.accepted.append(order)
                    self.accepted_at.append(time.monotonic())
            time.sleep(0.05)

    def _register_and_login(self, client: httpx.Client, email: str) -> str | None:
        client.post(
            "/auth/register",
            json={"email": email, "name": "Load", "password": PASSWORD},
        )
        login = client.post("/auth/login", json={"email": email, "password": PASSWORD})
        return str(login.json()["access_token"]) if login.status_code == 200 else None

    def _place(
        self, client: httpx.Client, token: str, key: str, body: dict[str, Any]
    ) -> str | None:
        reply = client.post(
            "/orders",
            json=body,
            headers={"Authorization": f"Bearer {token}", "Idempotency-Key": key},
        )
        if reply.status_code == 201:
            return str(reply.json()["id"])
        self.failures[f"HTTP {reply.status_code}"] += 1
        return None

    def _retry(self, attempt: Any, what: str) -> Any:
        deadline = time.monotonic() + self.patience
        while time.monotonic() < deadline:
            try:
                with httpx.Client(base_url=self.url(), timeout=10) as client:
                    result = attempt(client)
                if result:
                    return result
            except httpx.HTTPError as e:
                self.failures[f"{what}: {type(e).__name__}"] += 1
            time.sleep(0.2)
        self.failures[f"{what}: gave up"] += 1
        return None


def applied_twice(
    system: System, settings: Settings, orders: list[dict[str, Any]]
) -> int:
    """Captures beyond one per order, and notifications beyond one per order."""
    extra = 0
    payments = Payments(settings)
    try:
        for order in orders:
            events = payments.repository.event_store.get(
                payment_id(UUID(order["order_id"]))
            )
            captured = sum(isinstance(e, Payment.PaymentCaptured) for e in events)
            told = system.call(
                "notifications", "notifications.getAll", order_id=order["order_id"]
            )
            extra += max(captured - 1, 0) + max(told["total"] - 1, 0)
    finally:
        payments.close()
    return extra
