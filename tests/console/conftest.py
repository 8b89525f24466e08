"""The console against the running system: every service a process of its
own on the real servers (one system for the module, its own schema and
prefix), driven in Debian's Chromium by Playwright."""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from kombu.connection import Connection
from psycopg import sql

from ordersys.persistence.database import connect, ensure_database
from ordersys.settings import load_settings
from tests.integration.test_transport_rabbitmq import delete_topology
from tests.system.system import URL, System, eventually

playwright_api = pytest.importorskip("playwright.sync_api")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"
ADMIN = ("root@example.com", "a long admin password")
CUSTOMER = ("ann@example.com", "correct horse battery")


@dataclass
class Shop:
    """The running system, and what the tests placed in it."""

    system: System
    base: str
    prefix: str
    confirmed: str
    cancelled: str
    customer_id: str

    def url(self, path: str) -> str:
        return f"{self.base}{path}"


def _http(base: str, method: str, path: str, token: str = "", **body: Any) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    reply = httpx.request(
        method, f"{base}{path}", json=body or None, headers=headers, timeout=15
    )
    assert reply.status_code < 300, reply.text
    return reply.json()


def _token(base: str, email: str, password: str) -> str:
    tokens = _http(base, "POST", "/auth/login", email=email, password=password)
    return str(tokens["access_token"])


def _final(system: System, order_id: str) -> dict[str, Any]:
    return system.final([order_id])[0]


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Shop]:
    if not os.path.exists(CHROMIUM):
        pytest.skip(f"no Chromium at {CHROMIUM}")
    schema = f"test_{uuid.uuid4().hex[:12]}"
    settings = load_settings(
        {"postgres_dbname": "ordersys_test", "postgres_schema": schema}
    )
    ensure_database(settings)
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "ORDERSYS_POSTGRES_DBNAME": "ordersys_test",
        "ORDERSYS_POSTGRES_SCHEMA": schema,
        "ORDERSYS_MESSAGING_PREFIX": prefix,
        "ORDERSYS_CACHE_PREFIX": prefix,
        # Two cores shared with other suites: a password check may be slow.
        "ORDERSYS_RPC_TIMEOUT": "10",
        "ORDERSYS_SAGA_STEP_TIMEOUT": "30",
        "ORDERSYS_LOG_LEVEL": "WARNING",
        "ORDERSYS_JWT_SECRET": "a console test secret of 32+ characters",
    }
    log = tmp_path_factory.mktemp("console") / "services.log"
    system = System(env, log)
    try:
        system.start()
        yield _fill(system, prefix)
    finally:
        system.stop()
        delete_topology(prefix)
        with connect(settings, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(schema)
                )
            )
        print(log.read_text()[-5000:])


def _fill(system: System, prefix: str) -> Shop:
    """An admin, a customer, and two orders placed over HTTP: one that is
    confirmed, one cancelled for want of stock."""
    base = f"http://127.0.0.1:{system.gateway_port}"
    system.call(
        "users",
        "user.create",
        email=ADMIN[0],
        name="Root",
        password=ADMIN[1],
        role="admin",
    )
    customer = _http(
        base,
        "POST",
        "/auth/register",
        email=CUSTOMER[0],
        name="Ann",
        password=CUSTOMER[1],
    )
    product = system.product(stock=2)
    token = _token(base, *CUSTOMER)

    def place(quantity: int) -> str:
        placed = _http(
            base,
            "POST",
            "/orders",
            token,
            items=[{"product_id": product, "quantity": quantity}],
            submit=True,
        )
        return str(placed["id"])

    confirmed, cancelled = place(1), place(5)
    assert _final(system, confirmed)["status"] == "CONFIRMED"
    assert _final(system, cancelled)["status"] == "CANCELLED"
    return Shop(system, base, prefix, confirmed, cancelled, str(customer["user_id"]))


def dead_letter(shop: Shop) -> str:
    """A valid event in the notifications' dead-letter queue, as if its
    handling had failed while the database was down; its message id."""
    message_id = f"users:{uuid.uuid4().int % 10**9}"
    queue = f"{shop.prefix}.notifications"
    body = {
        "message_type": "UserRegistered",
        "body": {
            "originator_id": str(uuid.uuid4()),
            "originator_version": 1,
            "timestamp": "2026-01-01T00:00:00+00:00",
            "email": "late@example.com",
            "name": "Late",
        },
    }
    with Connection(URL) as connection:
        producer = connection.Producer()
        producer.publish(
            json.dumps(body),
            exchange="",
            routing_key=f"{queue}.dlq",
            content_type="application/json",
            message_id=message_id,
            headers={
                "message_id": message_id,
                "origin": "users",
                "message_type": "UserRegistered",
                "x-ordersys-error": "failed 5 times: OperationalError('the database "
                "was down')",
            },
        )
    return message_id


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
        )
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 900})
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def log_in(page: Any, shop: Shop, email: str, password: str) -> None:
    """Log in through the form (again if the users service was too slow)."""

    def attempt() -> bool:
        page.goto(shop.url("/console/login"))
        page.fill("input[name=email]", email)
        page.fill("input[name=password]", password)
        with page.expect_navigation():
            page.click("button[type=submit]")
        return page.inner_text("h1") not in ("503", "504")

    until(attempt, within=60)


def screenshot(page: Any, name: str) -> None:
    IMAGES.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(IMAGES / f"console-{name}.png"), full_page=True)


def until(check: Any, within: float = 30.0) -> Any:
    return eventually(check, within)


def reload_until_shown(page: Any, locator: Any, within: float = 30.0) -> None:
    """Reload the page until ``locator`` is on it (a service slow to answer
    leaves it out of one look)."""
    deadline = time.monotonic() + within
    while not locator.count():
        if time.monotonic() > deadline:
            msg = f"{locator} not shown; the page says: {page.inner_text('main')}"
            raise AssertionError(msg)
        time.sleep(0.5)
        page.reload()
