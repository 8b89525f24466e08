"""The running system for the gateway's API tests: the shop's services over the
real RabbitMQ, PostgreSQL and Redis, in this process, and the gateway on
uvicorn in a thread, reached over real HTTP (httpx). Started once per session
(starting the services takes seconds); every test makes its own users and
products, so tests do not see each other's data.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
import redis
from psycopg import sql

from ordersys.persistence.database import connect, ensure_database
from ordersys.service import Service
from ordersys.shop.gateway.composition import GatewayService
from ordersys.shop.gateway.composition import build as build_gateway
from ordersys.shop.services import SERVICES
from ordersys.shop.settings import ShopSettings, load_shop_settings
from ordersys.transport import Envelope
from ordersys.transport.rabbitmq import KombuTransport
from tests.conftest import TEST_DATABASE
from tests.integration.test_transport_rabbitmq import URL, delete_topology

PASSWORD = "correct horse battery"
SECRET = "the test key of the gateway: long enough for HS256 and for HS512 too"


@dataclass
class User:
    """A registered user with a logged-in client."""

    client: httpx.Client
    user_id: str
    email: str
    tokens: dict[str, Any]

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.tokens['access_token']}"}


@dataclass
class System:
    """The running system: its settings, the gateway's URL, a transport to the
    services (for what the API does not do, e.g. making the first admin)."""

    settings: ShopSettings
    gateway: GatewayService
    transport: KombuTransport
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.gateway.url

    def client(self, **options: Any) -> httpx.Client:
        options.setdefault("base_url", self.url)
        client = httpx.Client(timeout=30, **options)
        self.clients.append(client)
        return client

    def call(self, service: str, message_type: str, **body: Any) -> Any:
        return self.transport.call(
            service, Envelope.new(message_type, body), timeout=10
        )

    def register(self, role: str = "customer") -> User:
        """A new user (an admin is made through the users service: the API
        makes customers only), logged in."""
        email = f"{role}-{uuid.uuid4().hex[:10]}@example.com"
        client = self.client()
        if role == "customer":
            reply = client.post(
                "/auth/register",
                json={"email": email, "name": "Ann", "password": PASSWORD},
            )
            assert reply.status_code == 201, reply.text
            user_id = reply.json()["user_id"]
        else:
            written = self.call(
                "users",
                "user.create",
                email=email,
                name="Root",
                password=PASSWORD,
                role=role,
            )
            user_id = written["aggregate_id"]
        login = client.post("/auth/login", json={"email": email, "password": PASSWORD})
        assert login.status_code == 200, login.text
        return User(client, user_id, email, login.json())

    def product(
        self, admin: User, price_cents: int = 1299, stock: int = 10
    ) -> dict[str, Any]:
        sku = f"P-{uuid.uuid4().hex[:10].upper()}"
        reply = admin.client.post(
            "/admin/products",
            headers=admin.headers(),
            json={
                "sku": sku,
                "name": f"Product {sku}",
                "price_cents": price_cents,
                "stock": stock,
            },
        )
        assert reply.status_code == 201, reply.text
        product_id = reply.json()["product_id"]
        # The catalog's read model shows it a moment later (bounded wait).
        deadline = time.monotonic() + 10
        while admin.client.get(f"/products/{product_id}").status_code == 404:
            assert time.monotonic() < deadline, "the product never showed"
            time.sleep(0.02)
        return {"product_id": product_id, "sku": sku}


def system_settings(schema: str, prefix: str, **overrides: Any) -> ShopSettings:
    return load_shop_settings(
        {
            "postgres_dbname": TEST_DATABASE,
            "postgres_schema": schema,
            "messaging_prefix": prefix,
            "cache_prefix": prefix,
            "saga_step_timeout": 10.0,
            "gateway_port": 0,
            "jwt_secret": SECRET,
            "rate_limit_per_minute": 100_000,
            # Small pools: every service shares the server's 100 connections.
            "postgres_pool_size": 2,
            "postgres_max_overflow": 4,
            **overrides,
        }
    )


def start_gateway(settings: ShopSettings) -> GatewayService:
    transport = KombuTransport(settings.rabbitmq_url, prefix=settings.messaging_prefix)
    gateway = build_gateway(settings, transport)
    assert isinstance(gateway, GatewayService)
    gateway.start()
    return gateway


@pytest.fixture(scope="session")
def system() -> Iterator[System]:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    schema = f"test_{uuid.uuid4().hex[:12]}"
    settings = system_settings(schema, prefix)
    ensure_database(settings)
    started: list[Service] = []
    transport = KombuTransport(URL, prefix=prefix)
    clients: list[httpx.Client] = []
    try:
        # Everything started is stopped below, even when a later start fails.
        for name, build in SERVICES.items():
            if name != "gateway":
                service = build(settings, KombuTransport(URL, prefix=prefix))
                service.start()
                started.append(service)
        gateway = start_gateway(settings)
        started.append(gateway)
        running = System(settings, gateway, transport, clients)
        yield running
    finally:
        for client in clients:
            client.close()
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


def forget_keys(settings: ShopSettings) -> None:
    """Delete the Redis keys of a test's cache prefix."""
    client = redis.Redis.from_url(settings.redis_url)
    keys = list(client.scan_iter(f"{settings.cache_prefix}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.close()


@pytest.fixture
def admin(system: System) -> User:
    return system.register("admin")


@pytest.fixture
def ann(system: System) -> User:
    return system.register()


@pytest.fixture
def bob(system: System) -> User:
    return system.register()


def place(
    user: User, *items: tuple[dict[str, Any], int], submit: bool = False
) -> dict[str, Any]:
    """Place an order of ``items`` (product, quantity); the reply's JSON."""
    reply = user.client.post(
        "/orders",
        headers=user.headers(),
        json={
            "items": [
                {"product_id": product["product_id"], "quantity": quantity}
                for product, quantity in items
            ],
            "submit": submit,
        },
    )
    assert reply.status_code == 201, reply.text
    return dict(reply.json())


def wait_for_status(
    user: User, written: dict[str, Any], *statuses: str
) -> dict[str, Any]:
    """Read the order after its write, then until the saga has brought it to one
    of ``statuses`` (bounded: the last state seen is returned either way)."""
    deadline = time.monotonic() + 30
    params = {"after_position": written["position"]}
    while True:
        reply = user.client.get(
            f"/orders/{written['id']}", headers=user.headers(), params=params
        )
        assert reply.status_code == 200, reply.text
        order = dict(reply.json())
        if order["status"] in statuses or time.monotonic() > deadline:
            return order
        time.sleep(0.05)


@pytest.fixture
def gateway_with(system: System) -> Iterator[Any]:
    """Start another gateway in front of the same services with other settings;
    stopped after the test."""
    started: list[GatewayService] = []

    def start(**overrides: Any) -> httpx.Client:
        settings = system.settings.model_copy(update=overrides)
        gateway = start_gateway(settings)
        started.append(gateway)
        return system.client(base_url=gateway.url)

    yield start
    for gateway in started:
        gateway.stop()
        if gateway.settings.cache_prefix != system.settings.cache_prefix:
            forget_keys(gateway.settings)
