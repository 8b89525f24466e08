"""The operator console in a real browser, against the running system.

Each test takes the screenshots of the pages it visits (docs/images/console-*.png,
shown in docs/console.md)."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.console.conftest import (
    ADMIN,
    CUSTOMER,
    Shop,
    dead_letter,
    log_in,
    reload_until_shown,
    screenshot,
    until,
)

JOURNEY_ORDER = [
    ("gateway", "http", "HTTP POST /orders"),
    ("orders", "event", "OrderPlaced appended"),
    ("orders", "command", "saga sends product.reserveInventory"),
    ("catalog", "event", "StockReserved appended"),
    ("orders", "command", "saga sends payment.capture"),
    ("payments", "event", "PaymentCaptured appended"),
    ("orders", "event", "OrderConfirmed appended"),
]
"""Steps of a confirmed order's journey, in the order they must appear."""


def steps(page: Any) -> list[tuple[str, str, str]]:
    return [
        (
            item.get_attribute("data-service") or "",
            item.get_attribute("data-kind") or "",
            item.locator(".title").inner_text(),
        )
        for item in page.locator("ol.timeline > li").all()
    ]


def test_an_admin_finds_a_confirmed_order_and_sees_its_journey_in_causal_order(
    shop: Shop, page: Any
) -> None:
    log_in(page, shop, *ADMIN)
    page.wait_for_selector("table.services")
    until(lambda: page.locator("td.up").count() >= 7)
    page.wait_for_selector("main[data-refreshed]")  # it refreshed by itself
    screenshot(page, "overview")

    page.click("nav >> text=Orders")
    page.fill("input[name=q]", shop.confirmed)
    page.click("button:has-text('Find')")
    page.wait_for_selector("#order-status")
    # The consumers handle the order's last events a moment after it is final.
    until(lambda: page.reload() or "handled" in {k for _, k, _ in steps(page)})

    timeline = steps(page)
    assert page.inner_text("#order-status") == "CONFIRMED"
    services = {service for service, _, _ in timeline}
    assert {"gateway", "orders", "catalog", "payments", "notifications"} <= services
    assert len(services) >= 5
    positions = [_first(timeline, step) for step in JOURNEY_ORDER]
    assert positions == sorted(positions), timeline
    placed = _first(timeline, ("orders", "event", "OrderPlaced appended"))
    assert _first(timeline, ("orders", "publish", "published OrderPlaced")) > placed
    assert _first(timeline, ("notifications", "handled", "OrderPlaced")) > placed
    assert _first(timeline, ("orders", "read model", "applied OrderPlaced")) > placed
    assert any(kind == "deadline" for _, kind, _ in timeline)
    screenshot(page, "journey")


def _first(timeline: list[tuple[str, str, str]], step: tuple[str, str, str]) -> int:
    service, kind, text = step
    for index, (s, k, title) in enumerate(timeline):
        if s == service and k == kind and text in title:
            return index
    msg = f"no step {step} in {timeline}"
    raise AssertionError(msg)


def test_an_admin_finds_a_cancelled_order_by_its_customer_and_sees_why(
    shop: Shop, page: Any
) -> None:
    log_in(page, shop, *ADMIN)
    page.goto(shop.url(f"/console/orders?q={shop.customer_id}"))
    page.click(f"a:has-text('{shop.cancelled}')")

    assert page.inner_text("#order-status") == "CANCELLED"
    assert "stock not reserved" in page.inner_text("#order-reason")
    titles = [title for _, _, title in steps(page)]
    assert any("refused: " in t for t in titles)
    assert any("saga failed: stock not reserved" in t for t in titles)
    screenshot(page, "cancelled")

    page.click("text=its saga")
    assert page.inner_text("#saga-state") == "failed"
    screenshot(page, "saga")
    page.goto(shop.url("/console/sagas?state=failed"))
    assert page.locator(f"table.sagas >> text={shop.cancelled}").count() == 1
    screenshot(page, "sagas")
    page.goto(shop.url(f"/console/events?aggregate_id={shop.cancelled}"))
    assert page.locator("table.events >> text=OrderCancelled").count() == 1
    screenshot(page, "events")


def test_an_admin_replays_a_dead_letter_and_sees_it_handled(
    shop: Shop, page: Any
) -> None:
    message_id = dead_letter(shop)
    queue = f"{shop.prefix}.notifications"
    log_in(page, shop, *ADMIN)
    page.goto(shop.url("/console/dead-letters"))
    link = page.locator(f"a[href$='queue={queue}']")
    reload_until_shown(page, link)
    link.click()
    letter = page.locator(f"tr[data-message-id='{message_id}']")
    assert "the database was down" in letter.locator(".reason").inner_text()
    screenshot(page, "dead-letters")

    letter.locator("button:has-text('Replay')").click()

    handled = page.locator(f"li[data-message-id='{message_id}'] .handled")
    handled.wait_for()
    assert queue in page.inner_text(f"li[data-message-id='{message_id}']")
    assert page.locator(f"tr[data-message-id='{message_id}']").count() == 0
    screenshot(page, "replayed")


def test_an_admin_rebuilds_a_projection_and_sees_it_finish(
    shop: Shop, page: Any
) -> None:
    log_in(page, shop, *ADMIN)
    page.goto(shop.url("/console/projections"))
    row = page.locator("tr[data-projection='order_details']")
    reload_until_shown(page, row)
    before = int(row.locator(".generation").inner_text())

    row.locator("button:has-text('rebuild')").click()

    row.locator(".rebuilt").wait_for()
    assert int(row.locator(".generation").inner_text()) > before
    assert re.search(r"rebuilt into generation \d+", row.inner_text())
    screenshot(page, "projections")


def test_a_customer_session_is_refused_and_actions_need_the_csrf_token(
    shop: Shop, page: Any
) -> None:
    log_in(page, shop, *CUSTOMER)
    assert "403" in page.inner_text("h1")
    screenshot(page, "forbidden")
    cookies = {c["name"]: c for c in page.context.cookies()}
    session = cookies["ordersys_console"]
    assert session["httpOnly"]
    assert session["sameSite"] == "Strict"

    page.context.clear_cookies()
    log_in(page, shop, *ADMIN)
    admin = {c["name"]: c["value"] for c in page.context.cookies()}
    forged = httpx.post(
        shop.url("/console/projections/orders/order_details/pause"),
        cookies=admin,
        follow_redirects=False,
    )
    assert forged.status_code == 403
    page.goto(shop.url("/console/projections"))
    state = page.locator("tr[data-projection='order_details'] .state")
    assert state.inner_text() != "paused"


def test_the_login_page_refuses_a_wrong_password(shop: Shop, page: Any) -> None:
    log_in(page, shop, ADMIN[0], "not the password")

    assert "wrong email or password" in page.inner_text("[role=alert]")
    screenshot(page, "login")
