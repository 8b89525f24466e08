"""Admin endpoints over HTTP: users, products and stock, shipping, every order,
analytics and the dead-letter queues."""

from __future__ import annotations

import time
import uuid

from kombu.connection import Connection
from kombu.messaging import Producer

from tests.gateway.conftest import PASSWORD, System, User, place, wait_for_status
from tests.gateway.test_auth import fields_of, problem_of
from tests.integration.test_transport_rabbitmq import URL


def test_an_admin_makes_another_admin(system: System, admin: User) -> None:
    email = f"root-{uuid.uuid4().hex[:8]}@example.com"

    made = admin.client.post(
        "/admin/users",
        headers=admin.headers(),
        json={"email": email, "name": "Root", "password": PASSWORD, "role": "admin"},
    )
    login = system.client().post(
        "/auth/login", json={"email": email, "password": PASSWORD}
    )
    analytics = system.client().get(
        "/admin/analytics",
        headers={"Authorization": f"Bearer {login.json()['access_token']}"},
    )

    assert made.status_code == 201, made.text
    assert made.json()["role"] == "admin"
    assert analytics.status_code == 200, analytics.text


def test_products_stock_and_prices(system: System, admin: User, ann: User) -> None:
    book = system.product(admin, price_cents=1000, stock=1)
    path = f"/admin/products/{book['product_id']}"

    stocked = admin.client.post(
        f"{path}/stock", headers=admin.headers(), json={"quantity": 4}
    )
    repriced = admin.client.post(
        f"{path}/price", headers=admin.headers(), json={"price_cents": 800}
    )
    shown = system.client().get(
        f"/products/{book['product_id']}",
        params={"after_position": repriced.json()["position"]},
    )
    written = place(ann, (book, 2))
    order = wait_for_status(ann, written, "PENDING")
    browse = system.client().get("/products", params={"limit": 100}).json()

    assert stocked.status_code == 200, stocked.text
    assert stocked.json() == {"product_id": book["product_id"], "available": 5}
    assert repriced.status_code == 200, repriced.text
    assert shown.json()["price_cents"] == 800
    assert order["lines"][0]["unit_price_cents"] == 800
    assert browse["total"] >= 1
    assert browse["limit"] == 100


def test_invalid_products_name_the_field(admin: User) -> None:
    bad_sku = admin.client.post(
        "/admin/products",
        headers=admin.headers(),
        json={"sku": "lower case", "name": "x", "price_cents": 100},
    )
    free = admin.client.post(
        "/admin/products",
        headers=admin.headers(),
        json={"sku": "FREE-1", "name": "x", "price_cents": 0},
    )
    no_stock = admin.client.post(
        f"/admin/products/{uuid.uuid4()}/stock",
        headers=admin.headers(),
        json={"quantity": 0},
    )

    assert fields_of(problem_of(bad_sku, 422, "invalid_input")) == {"sku"}
    assert fields_of(problem_of(free, 422, "invalid_input")) == {"price_cents"}
    assert fields_of(problem_of(no_stock, 422, "invalid_input")) == {"quantity"}


def test_unknown_products_and_orders_are_404(admin: User) -> None:
    missing = uuid.uuid4()

    for method, path, body in [
        ("GET", f"/products/{missing}", None),
        ("POST", f"/admin/products/{missing}/price", {"price_cents": 5}),
        ("POST", f"/admin/products/{missing}/discontinue", None),
        ("GET", f"/admin/orders/{missing}", None),
        ("POST", f"/admin/orders/{missing}/ship", None),
    ]:
        reply = admin.client.request(method, path, headers=admin.headers(), json=body)
        problem_of(reply, 404, "not_found")


def test_an_order_is_shipped_then_delivered(
    system: System, admin: User, ann: User
) -> None:
    book = system.product(admin)
    written = place(ann, (book, 1), submit=True)
    wait_for_status(ann, written, "CONFIRMED")
    pending = place(ann, (book, 1))
    path = f"/admin/orders/{written['id']}"

    early_delivery = admin.client.post(f"{path}/deliver", headers=admin.headers())
    shipped = admin.client.post(f"{path}/ship", headers=admin.headers())
    delivered = admin.client.post(f"{path}/deliver", headers=admin.headers())
    not_confirmed = admin.client.post(
        f"/admin/orders/{pending['id']}/ship", headers=admin.headers()
    )
    order = ann.client.get(
        f"/orders/{written['id']}",
        headers=ann.headers(),
        params={"after_position": delivered.json()["position"]},
    ).json()

    problem_of(early_delivery, 409, "business_rule_violated")
    assert shipped.status_code == 200, shipped.text
    assert delivered.status_code == 200, delivered.text
    assert order["status"] == "DELIVERED"
    problem_of(not_confirmed, 409, "business_rule_violated")


def test_every_order_is_listed_by_customer_and_status(
    system: System, admin: User, ann: User, bob: User
) -> None:
    book = system.product(admin)
    place(ann, (book, 1))
    last = place(bob, (book, 1))

    bobs = admin.client.get(
        "/admin/orders",
        headers=admin.headers(),
        params={"customer_id": bob.user_id, "after_position": last["position"]},
    ).json()
    pending = admin.client.get(
        "/admin/orders", headers=admin.headers(), params={"status": "PENDING"}
    ).json()

    assert [o["customer_id"] for o in bobs["orders"]] == [bob.user_id]
    assert pending["total"] >= 2


def test_analytics(system: System, admin: User, ann: User) -> None:
    book = system.product(admin)
    written = place(ann, (book, 1), submit=True)
    wait_for_status(ann, written, "CONFIRMED")

    figures = admin.client.get(
        "/admin/analytics", headers=admin.headers(), params={"top": 3, "days": 7}
    )
    bad = admin.client.get(
        "/admin/analytics", headers=admin.headers(), params={"top": 0}
    )

    assert figures.status_code == 200, figures.text
    assert set(figures.json()) >= {
        "revenue_per_day",
        "orders_by_status",
        "top_products",
        "conversion",
        "saga_duration_seconds",
    }
    assert fields_of(problem_of(bad, 422, "invalid_input")) == {"top"}


def count_of(admin: User, queue: str) -> int:
    listed = admin.client.get("/admin/dead-letters", headers=admin.headers())
    assert listed.status_code == 200, listed.text
    return sum(q["count"] for q in listed.json() if q["queue"] == queue)


def eventually(check: object, expected: int, admin: User, queue: str) -> int:
    deadline = time.monotonic() + 10
    while (found := count_of(admin, queue)) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def dead_letter_in(system: System, service: str) -> str:
    """Send a malformed request to ``service``: it dead-letters it. Returns
    the queue's name."""
    queue = system.transport.service_queue(service)
    with Connection(URL) as connection:
        Producer(connection.default_channel).publish(
            {"not": "an envelope"},
            exchange=system.transport.commands,
            routing_key=service,
            declare=[queue],
            serializer="json",
        )
    return str(queue.name)


def test_dead_letters_are_listed_replayed_and_purged(
    system: System, admin: User
) -> None:
    queue = dead_letter_in(system, "payments")
    path = f"/admin/dead-letters/{queue}"

    before = eventually(None, 1, admin, queue)
    replayed = admin.client.post(f"{path}/replay", headers=admin.headers())
    again = eventually(None, 1, admin, queue)  # still malformed: back it goes
    purged = admin.client.delete(path, headers=admin.headers())
    after = count_of(admin, queue)
    unknown = admin.client.get(
        "/admin/dead-letters/not.a.queue", headers=admin.headers()
    )

    assert before == 1
    # A malformed request is dead-lettered again at once, and replay may move
    # it more than once before it sees the queue empty.
    assert replayed.json()["queue"] == queue
    assert replayed.json()["count"] >= 1
    assert again == 1
    assert purged.json() == {"queue": queue, "count": 1}
    assert after == 0
    problem_of(unknown, 404, "not_found")


def test_dead_letters_are_shown_with_their_reason(system: System, admin: User) -> None:
    queue = dead_letter_in(system, "users")
    eventually(None, 1, admin, queue)

    shown = admin.client.get(f"/admin/dead-letters/{queue}", headers=admin.headers())
    admin.client.delete(f"/admin/dead-letters/{queue}", headers=admin.headers())

    assert shown.status_code == 200, shown.text
    assert "malformed request" in shown.json()[0]["reason"]
