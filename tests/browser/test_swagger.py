"""The API's page in a real browser with no network: Debian's Chromium, driven
by Playwright, opens the gateway's ``/docs`` (Swagger UI) while every request
to anywhere but this machine is refused, finds every operation of the API
listed, and tried to load nothing from elsewhere. Whatever the page needs
comes from the gateway itself.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest

from ordersys.shop.gateway.composition import build
from ordersys.shop.settings import load_shop_settings
from ordersys.transport.memory import MemoryTransport

CHROMIUM = Path("/usr/bin/chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
]
LOCAL = {"127.0.0.1", "localhost", "::1"}
RENDER_MS = 180_000
"""A bound on loading and rendering, generous for a busy machine."""

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists(),
    reason="needs Debian's chromium at /usr/bin/chromium (apt-get install chromium)",
)


@pytest.fixture(scope="module")
def gateway() -> Iterator[str]:
    """A gateway on a free port (its pages need no service behind it)."""
    settings = load_shop_settings(
        {
            "persistence": "memory",
            "jwt_secret": "s" * 32,
            "gateway_port": 0,
            "cache_prefix": f"test-{uuid.uuid4().hex[:8]}",
        }
    )
    service = build(settings, MemoryTransport())
    service.start()
    yield str(getattr(service, "url"))  # noqa: B009 (a GatewayService's)
    service.stop()


@pytest.fixture
def offline_page() -> Iterator[tuple[Any, list[str]]]:
    """A Chromium page that can reach this machine only, and the requests it
    tried to make elsewhere."""
    from playwright.sync_api import Route, sync_playwright

    elsewhere: list[str] = []

    def only_local(route: Route) -> None:
        if urlsplit(route.request.url).hostname in LOCAL:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(RENDER_MS)
        page.route("**/*", only_local)
        yield page, elsewhere
        browser.close()


def operations(url: str) -> set[str]:
    document = httpx.get(f"{url}/openapi.json").json()
    return {
        f"{method.upper()} {path}"
        for path, methods in document["paths"].items()
        for method in methods
    }


def test_swagger_ui_lists_every_operation_with_no_network(
    gateway: str, offline_page: tuple[Any, list[str]], tmp_path: Path
) -> None:
    page, elsewhere = offline_page

    page.goto(f"{gateway}/docs")
    page.wait_for_selector(".opblock-summary-path")
    page.screenshot(path=str(tmp_path / "swagger.png"))
    listed = page.eval_on_selector_all(
        ".opblock-summary",
        """blocks => blocks.map(b =>
            b.querySelector('.opblock-summary-method').innerText + ' ' +
            b.querySelector('.opblock-summary-path').getAttribute('data-path'))""",
    )

    assert "POST /orders" in listed
    assert set(listed) == operations(gateway)
    assert (tmp_path / "swagger.png").stat().st_size > 10_000
    assert elsewhere == []
