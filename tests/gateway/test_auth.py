"""Registration, log in, tokens and roles, over HTTP."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt

from tests.gateway.conftest import PASSWORD, SECRET, System, User


def problem_of(reply: Any, status: int, code: str) -> dict[str, Any]:
    """The reply is an RFC 9457 problem with this status and code."""
    assert reply.status_code == status, reply.text
    assert reply.headers["content-type"] == "application/problem+json"
    body = dict(reply.json())
    assert body["status"] == status
    assert body["code"] == code
    assert body["type"] == f"urn:ordersys:problem:{code}"
    assert body["title"]
    assert body["detail"]
    assert body["request_id"] == reply.headers["x-request-id"]
    assert "Traceback" not in reply.text
    return body


def fields_of(problem: dict[str, Any]) -> set[str]:
    return {error["field"] for error in problem.get("errors", [])}


def token(subject: str, **claims: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": "ordersys-gateway",
        "aud": "ordersys",
        "sub": subject,
        "role": "customer",
        "typ": "access",
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
        **claims,
    }


def bearer(value: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {value}"}


def test_register_then_log_in_then_my_profile(system: System) -> None:
    client = system.client()
    email = f"Reg-{uuid.uuid4().hex[:8]}@Example.com"

    registered = client.post(
        "/auth/register", json={"email": email, "name": "Ann", "password": PASSWORD}
    )
    login = client.post("/auth/login", json={"email": email, "password": PASSWORD})
    me = client.get("/users/me", headers=bearer(login.json()["access_token"]))

    assert registered.status_code == 201, registered.text
    assert registered.headers["location"] == "/users/me"
    profile = registered.json()
    assert profile["email"] == email.lower()
    assert profile["role"] == "customer"
    assert "password" not in registered.text
    assert login.status_code == 200
    assert login.json()["token_type"] == "bearer"
    assert login.json()["expires_in"] == system.settings.jwt_access_seconds
    assert me.json() == profile


def test_registering_twice_is_a_conflict_naming_the_email(
    system: System, ann: User
) -> None:
    reply = system.client().post(
        "/auth/register",
        json={"email": ann.email.upper(), "name": "Ann", "password": PASSWORD},
    )

    problem = problem_of(reply, 409, "conflict")
    assert fields_of(problem) == {"email"}


def test_a_client_cannot_make_itself_an_admin(system: System) -> None:
    reply = system.client().post(
        "/auth/register",
        json={
            "email": f"x-{uuid.uuid4().hex[:8]}@example.com",
            "name": "Mallory",
            "password": PASSWORD,
            "role": "admin",
        },
    )

    problem = problem_of(reply, 422, "invalid_input")
    assert fields_of(problem) == {"role"}


def test_invalid_registrations_name_the_field(system: System) -> None:
    client = system.client()

    short = client.post(
        "/auth/register", json={"email": "a@example.com", "name": "A", "password": "x"}
    )
    not_an_email = client.post(
        "/auth/register", json={"email": "nope", "name": "A", "password": PASSWORD}
    )

    assert fields_of(problem_of(short, 422, "invalid_input")) == {"password"}
    assert fields_of(problem_of(not_an_email, 422, "invalid_input")) == {"email"}


def test_a_wrong_password_or_unknown_email_is_401(system: System, ann: User) -> None:
    client = system.client()

    wrong = client.post("/auth/login", json={"email": ann.email, "password": "wrong!"})
    unknown = client.post(
        "/auth/login", json={"email": "nobody@example.com", "password": PASSWORD}
    )

    assert (
        problem_of(wrong, 401, "unauthenticated")["detail"]
        == (problem_of(unknown, 401, "unauthenticated")["detail"])
    )
    assert wrong.headers["www-authenticate"] == "Bearer"


def test_no_bad_forged_or_expired_token_gets_in(system: System, ann: User) -> None:
    client = system.client()
    now = int(time.time())
    tokens = {
        "none": None,
        "garbage": "not.a.token",
        "another key": jwt.encode(token(ann.user_id), "x" * 40, algorithm="HS256"),
        "HS512": jwt.encode(token(ann.user_id), SECRET, algorithm="HS512"),
        "alg none": jwt.encode(token(ann.user_id), None, algorithm="none"),
        "expired": jwt.encode(
            token(ann.user_id, iat=now - 120, exp=now - 60), SECRET, algorithm="HS256"
        ),
        "no expiry": jwt.encode(
            {k: v for k, v in token(ann.user_id).items() if k != "exp"},
            SECRET,
            algorithm="HS256",
        ),
        "refresh as access": ann.tokens["refresh_token"],
    }

    for name, value in tokens.items():
        headers = {} if value is None else bearer(value)
        reply = client.get("/users/me", headers=headers)
        assert reply.status_code == 401, name
        problem_of(reply, 401, "unauthenticated")
    assert (
        "expired"
        in client.get("/users/me", headers=bearer(tokens["expired"] or "")).json()[
            "detail"
        ]
    )


def test_a_refresh_token_buys_a_new_pair_once(system: System, ann: User) -> None:
    client = system.client()
    old = ann.tokens["refresh_token"]

    first = client.post("/auth/refresh", json={"refresh_token": old})
    again = client.post("/auth/refresh", json={"refresh_token": old})
    access_as_refresh = client.post(
        "/auth/refresh", json={"refresh_token": ann.tokens["access_token"]}
    )
    me = client.get("/users/me", headers=bearer(first.json()["access_token"]))

    assert first.status_code == 200, first.text
    assert first.json()["refresh_token"] != old
    assert me.json()["user_id"] == ann.user_id
    assert "used already" in problem_of(again, 401, "unauthenticated")["detail"]
    problem_of(access_as_refresh, 401, "unauthenticated")


def test_i_change_my_name(ann: User) -> None:
    changed = ann.client.patch(
        "/users/me", headers=ann.headers(), json={"name": "Anna"}
    )
    empty = ann.client.patch("/users/me", headers=ann.headers(), json={"name": ""})

    assert changed.status_code == 200, changed.text
    assert changed.json()["name"] == "Anna"
    assert changed.json()["version"] == 2
    assert fields_of(problem_of(empty, 422, "invalid_input")) == {"name"}


def test_a_customer_gets_403_from_every_admin_endpoint(
    system: System, ann: User
) -> None:
    some_id = str(uuid.uuid4())
    endpoints = [
        (
            "POST",
            "/admin/users",
            {"email": "z@example.com", "name": "Z", "password": PASSWORD},
        ),
        ("POST", "/admin/products", {"sku": "X-1", "name": "x", "price_cents": 100}),
        ("POST", f"/admin/products/{some_id}/stock", {"quantity": 1}),
        ("POST", f"/admin/products/{some_id}/price", {"price_cents": 1}),
        ("POST", f"/admin/products/{some_id}/discontinue", None),
        ("GET", "/admin/orders", None),
        ("GET", f"/admin/orders/{some_id}", None),
        ("POST", f"/admin/orders/{some_id}/ship", None),
        ("POST", f"/admin/orders/{some_id}/deliver", None),
        ("GET", "/admin/analytics", None),
        ("GET", "/admin/dead-letters", None),
        ("GET", "/admin/dead-letters/some.queue", None),
        ("POST", "/admin/dead-letters/some.queue/replay", None),
        ("DELETE", "/admin/dead-letters/some.queue", None),
    ]

    for method, path, body in endpoints:
        reply = ann.client.request(method, path, headers=ann.headers(), json=body)
        assert reply.status_code == 403, (method, path, reply.text)
        problem_of(reply, 403, "forbidden")
        anonymous = system.client().request(method, path, json=body)
        assert anonymous.status_code == 401, (method, path)
