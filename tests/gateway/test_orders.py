"""A customer's orders over HTTP: place, change, submit, cancel, read, list."""

from __future__ import annotations

import uuid

from ordersys.shop.gateway.models import Order
from tests.gateway.conftest import System, User, place, wait_for_status
from tests.gateway.test_auth import fields_of, problem_of


def test_an_order_is_placed_at_catalog_prices_and_confirmed(
    system: System, admin: User, ann: User
) -> None:
    book = system.product(admin, price_cents=1299, stock=5)
    pen = system.product(admin, price_cents=150, stock=5)

    written = place(ann, (book, 2), (pen, 3), submit=True)
    order = wait_for_status(ann, written, "CONFIRMED", "CANCELLED")
    payment = ann.client.get(f"/orders/{written['id']}/payment", headers=ann.headers())

    assert written["version"] == 2
    assert written["position"] > 0
    assert order["status"] == "CONFIRMED", order
    assert order["customer_id"] == ann.user_id
    assert order["total_cents"] == 2 * 1299 + 3 * 150
    assert {(x["product_id"], x["unit_price_cents"]) for x in order["lines"]} == {
        (book["product_id"], 1299),
        (pen["product_id"], 150),
    }
    assert payment.status_code == 200, payment.text
    assert payment.json()["amount_cents"] == order["total_cents"]


def test_a_client_cannot_set_prices_totals_status_or_owner(
    system: System, admin: User, ann: User
) -> None:
    book = system.product(admin)
    sneaky = [
        {
            "items": [
                {"product_id": book["product_id"], "quantity": 1, "unit_price_cents": 1}
            ]
        },
        {"items": [], "total_cents": 1},
        {"items": [], "status": "CONFIRMED"},
        {"items": [], "customer_id": str(uuid.uuid4())},
    ]

    for body in sneaky:
        reply = ann.client.post("/orders", headers=ann.headers(), json=body)
        problem = problem_of(reply, 422, "invalid_input")
        assert fields_of(problem) & {
            "items.0.unit_price_cents",
            "total_cents",
            "status",
            "customer_id",
        }


def test_items_are_added_and_removed_then_the_order_is_submitted(
    system: System, admin: User, ann: User
) -> None:
    book = system.product(admin, price_cents=500)
    pen = system.product(admin, price_cents=100)
    written = place(ann)
    path = f"/orders/{written['id']}"

    added = ann.client.post(
        f"{path}/items",
        headers=ann.headers(),
        json={"product_id": book["product_id"], "quantity": 2, "expected_version": 1},
    )
    more = ann.client.post(
        f"{path}/items",
        headers=ann.headers(),
        json={"product_id": pen["product_id"], "quantity": 1},
    )
    removed = ann.client.delete(
        f"{path}/items/{pen['product_id']}", headers=ann.headers()
    )
    submitted = ann.client.post(
        f"{path}/submit", headers=ann.headers(), json={"expected_version": 4}
    )
    order = wait_for_status(ann, submitted.json(), "CONFIRMED", "CANCELLED")

    assert added.status_code == 200, added.text
    assert added.json()["version"] == 2
    assert more.json()["version"] == 3
    assert removed.status_code == 200, removed.text
    assert submitted.status_code == 202, submitted.text
    assert order["status"] == "CONFIRMED"
    assert order["lines"] == [
        {"product_id": book["product_id"], "quantity": 2, "unit_price_cents": 500}
    ]
    assert order["total_cents"] == 1000


def test_a_stale_expected_version_is_409(
    system: System, admin: User, ann: User
) -> None:
    book = system.product(admin)
    written = place(ann, (book, 1))

    stale = ann.client.post(
        f"/orders/{written['id']}/submit",
        headers=ann.headers(),
        json={"expected_version": 7},
    )

    assert problem_of(stale, 409, "conflict")


def test_broken_business_rules_are_409(system: System, admin: User, ann: User) -> None:
    book = system.product(admin)
    empty = place(ann)
    submitted = place(ann, (book, 1), submit=True)

    submit_empty = ann.client.post(
        f"/orders/{empty['id']}/submit", headers=ann.headers()
    )
    add_to_submitted = ann.client.post(
        f"/orders/{submitted['id']}/items",
        headers=ann.headers(),
        json={"product_id": book["product_id"], "quantity": 1},
    )
    remove_missing = ann.client.delete(
        f"/orders/{empty['id']}/items/{book['product_id']}", headers=ann.headers()
    )

    problem_of(submit_empty, 409, "business_rule_violated")
    problem_of(add_to_submitted, 409, "business_rule_violated")
    problem_of(remove_missing, 409, "business_rule_violated")


def test_a_pending_order_is_cancelled_a_submitted_one_is_not(
    system: System, admin: User, ann: User
) -> None:
    book = system.product(admin)
    pending = place(ann, (book, 1))
    submitted = place(ann, (book, 1), submit=True)

    cancelled = ann.client.post(
        f"/orders/{pending['id']}/cancel",
        headers=ann.headers(),
        json={"reason": "changed my mind"},
    )
    refused = ann.client.post(
        f"/orders/{submitted['id']}/cancel", headers=ann.headers()
    )
    order = ann.client.get(
        f"/orders/{pending['id']}",
        headers=ann.headers(),
        params={"after_position": cancelled.json()["position"]},
    ).json()

    assert cancelled.status_code == 200, cancelled.text
    assert order["status"] == "CANCELLED"
    assert order["reason"] == "changed my mind"
    problem_of(refused, 409, "business_rule_violated")


def test_unknown_and_discontinued_products_are_refused(
    system: System, admin: User, ann: User
) -> None:
    gone = system.product(admin)
    taken_off = admin.client.post(
        f"/admin/products/{gone['product_id']}/discontinue", headers=admin.headers()
    ).json()
    shown = admin.client.get(
        f"/products/{gone['product_id']}",
        params={"after_position": taken_off["position"]},
    ).json()
    unknown = ann.client.post(
        "/orders",
        headers=ann.headers(),
        json={"items": [{"product_id": str(uuid.uuid4()), "quantity": 1}]},
    )
    discontinued = ann.client.post(
        "/orders",
        headers=ann.headers(),
        json={"items": [{"product_id": gone["product_id"], "quantity": 1}]},
    )

    assert shown["discontinued"] is True
    assert fields_of(problem_of(unknown, 422, "invalid_input")) == {
        "items.0.product_id"
    }
    problem_of(discontinued, 409, "business_rule_violated")


def test_my_orders_are_listed_newest_first_by_status_a_page_at_a_time(
    system: System, admin: User
) -> None:
    carol = system.register()
    book = system.product(admin)
    first = place(carol, (book, 1))
    second = place(carol, (book, 1))
    third = place(carol, (book, 1), submit=True)
    wait_for_status(carol, third, "CONFIRMED")

    page = carol.client.get(
        "/orders",
        headers=carol.headers(),
        params={"limit": 2, "after_position": third["position"]},
    ).json()
    rest = carol.client.get(
        "/orders", headers=carol.headers(), params={"limit": 2, "offset": 2}
    ).json()
    pending = carol.client.get(
        "/orders", headers=carol.headers(), params={"status": "PENDING"}
    ).json()
    bad = carol.client.get(
        "/orders", headers=carol.headers(), params={"status": "LOST"}
    )
    too_many = carol.client.get(
        "/orders", headers=carol.headers(), params={"limit": 1000}
    )

    assert page["total"] == 3
    assert [o["order_id"] for o in page["orders"]] == [third["id"], second["id"]]
    assert [o["order_id"] for o in rest["orders"]] == [first["id"]]
    assert {o["order_id"] for o in pending["orders"]} == {first["id"], second["id"]}
    assert fields_of(problem_of(bad, 422, "invalid_input")) == {"status"}
    assert fields_of(problem_of(too_many, 422, "invalid_input")) == {"limit"}


def test_a_read_waits_for_the_write_it_names(
    system: System, admin: User, ann: User
) -> None:
    book = system.product(admin)
    written = place(ann, (book, 1))

    added = ann.client.post(
        f"/orders/{written['id']}/items",
        headers=ann.headers(),
        json={"product_id": book["product_id"], "quantity": 4},
    ).json()
    order = ann.client.get(
        f"/orders/{written['id']}",
        headers=ann.headers(),
        params={"after_position": added["position"]},
    ).json()

    assert order["version"] == added["version"]
    assert order["lines"][0]["quantity"] == 5


def test_an_unknown_order_is_404_and_a_bad_id_422(ann: User) -> None:
    missing = ann.client.get(f"/orders/{uuid.uuid4()}", headers=ann.headers())
    bad = ann.client.get("/orders/not-a-uuid", headers=ann.headers())

    problem_of(missing, 404, "not_found")
    assert fields_of(problem_of(bad, 422, "invalid_input")) == {"order_id"}


def test_i_see_what_i_was_told(system: System, admin: User, ann: User) -> None:
    book = system.product(admin)
    written = place(ann, (book, 1), submit=True)
    wait_for_status(ann, written, "CONFIRMED")

    deadline_notes = []
    for _ in range(200):
        notes = ann.client.get(
            f"/orders/{written['id']}/notifications", headers=ann.headers()
        )
        assert notes.status_code == 200, notes.text
        deadline_notes = notes.json()["notifications"]
        if deadline_notes:
            break
        import time

        time.sleep(0.05)
    mine = ann.client.get("/notifications", headers=ann.headers())

    assert deadline_notes
    assert mine.status_code == 200
    assert mine.json()["total"] >= len(deadline_notes)


def test_the_cached_read_answers_what_the_route_answers(
    system: System, admin: User, ann: User
) -> None:
    book = system.product(admin)
    written = place(ann, (book, 2), submit=True)
    wait_for_status(ann, written, "CONFIRMED")
    path = f"/orders/{written['id']}"

    fast = ann.client.get(path, headers=ann.headers())
    # A query parameter the fast path does not know sends it to the route.
    routed = ann.client.get(path, headers=ann.headers(), params={"via": "route"})

    assert fast.status_code == routed.status_code == 200
    assert fast.json() == routed.json()
    assert Order.model_validate(fast.json()).total_cents == 2 * 1299
    assert fast.headers["content-type"] == routed.headers["content-type"]
    assert fast.headers["ratelimit-limit"] == routed.headers["ratelimit-limit"]


def test_a_plain_order_is_placed_as_the_route_places_it(
    system: System, admin: User, ann: User
) -> None:
    book = system.product(admin, price_cents=1299, stock=5)
    body = {"items": [{"product_id": book["product_id"], "quantity": 2}]}
    # The product's price is in the catalog's cache: the plain order is
    # placed without the route; a query parameter sends the same to the route.
    assert ann.client.get(f"/products/{book['product_id']}").status_code == 200

    fast = ann.client.post("/orders", headers=ann.headers(), json=body)
    routed = ann.client.post(
        "/orders", headers=ann.headers(), json=body, params={"via": "route"}
    )

    assert fast.status_code == routed.status_code == 201, (fast.text, routed.text)
    assert fast.json().keys() == routed.json().keys() == {"id", "version", "position"}
    assert fast.json()["version"] == routed.json()["version"]
    for reply in (fast, routed):
        assert reply.headers["location"] == f"/orders/{reply.json()['id']}"
        assert reply.headers["content-type"] == "application/json"
        assert reply.headers["ratelimit-limit"]
        assert reply.headers["x-request-id"]
        order = ann.client.get(reply.headers["location"], headers=ann.headers())
        assert order.status_code == 200, order.text
        assert order.json()["total_cents"] == 2 * 1299
        assert order.json()["customer_id"] == ann.user_id
