"""Object-level authorization: a customer reaches only their own orders. Every
resource of another customer's order answers 404, exactly as an order that does
not exist, and changes nothing."""

from __future__ import annotations

from tests.gateway.conftest import System, User, place, wait_for_status
from tests.gateway.test_auth import problem_of


def test_every_resource_of_another_customers_order_is_404(
    system: System, admin: User, ann: User, bob: User
) -> None:
    book = system.product(admin)
    pending = place(ann, (book, 1))
    confirmed = place(ann, (book, 1), submit=True)
    wait_for_status(ann, confirmed, "CONFIRMED")
    item = {"product_id": book["product_id"], "quantity": 1}
    attempts = [
        ("GET", f"/orders/{pending['id']}", None),
        ("GET", f"/orders/{confirmed['id']}", None),
        ("GET", f"/orders/{confirmed['id']}/payment", None),
        ("GET", f"/orders/{confirmed['id']}/notifications", None),
        ("POST", f"/orders/{pending['id']}/items", item),
        ("DELETE", f"/orders/{pending['id']}/items/{book['product_id']}", None),
        ("POST", f"/orders/{pending['id']}/submit", {}),
        ("POST", f"/orders/{pending['id']}/cancel", {"reason": "mine now"}),
        ("POST", f"/orders/{confirmed['id']}/cancel", {}),
    ]

    for method, path, body in attempts:
        reply = bob.client.request(method, path, headers=bob.headers(), json=body)
        assert reply.status_code == 404, (method, path, reply.text)
        problem_of(reply, 404, "not_found")
    listed = bob.client.get("/orders", headers=bob.headers()).json()
    told = bob.client.get("/notifications", headers=bob.headers()).json()
    after = ann.client.get(f"/orders/{pending['id']}", headers=ann.headers()).json()

    assert listed["total"] == 0
    assert all(
        n.get("order_id") not in (pending["id"], confirmed["id"])
        for n in told["notifications"]
    )
    assert after["status"] == "PENDING"
    assert after["version"] == pending["version"]
    assert after["lines"][0]["quantity"] == 1


def test_another_customers_order_looks_like_one_that_does_not_exist(
    system: System, admin: User, ann: User, bob: User
) -> None:
    book = system.product(admin)
    theirs = place(ann, (book, 1))
    wait_for_status(ann, theirs, "PENDING")

    probe = bob.client.get(f"/orders/{theirs['id']}", headers=bob.headers()).json()
    missing = bob.client.get(
        "/orders/00000000-0000-4000-8000-000000000000", headers=bob.headers()
    ).json()

    assert probe["detail"].replace(theirs["id"], "X") == missing["detail"].replace(
        "00000000-0000-4000-8000-000000000000", "X"
    )


def test_an_admin_reaches_any_order_through_the_admin_endpoints(
    system: System, admin: User, ann: User
) -> None:
    book = system.product(admin)
    written = place(ann, (book, 1))
    wait_for_status(ann, written, "PENDING")

    as_customer = admin.client.get(f"/orders/{written['id']}", headers=admin.headers())
    as_admin = admin.client.get(
        f"/admin/orders/{written['id']}", headers=admin.headers()
    )

    assert as_customer.status_code == 404
    assert as_admin.status_code == 200
    assert as_admin.json()["customer_id"] == ann.user_id
