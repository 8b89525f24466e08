"""What every request gets, whatever it asks: a request id, a bounded body, a
rate limit, idempotent POSTs, problems for a broker or service that is down or
slow, CORS, health, and the OpenAPI document."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
import uuid
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis

from ordersys.shop.gateway import idempotency
from ordersys.shop.gateway.auth import Tokens
from ordersys.shop.gateway.idempotency import PENDING_SECONDS
from tests.gateway.conftest import System, User
from tests.gateway.test_auth import fields_of, problem_of


def test_every_response_has_a_request_id_and_keeps_a_sane_given_one(
    system: System,
) -> None:
    client = system.client()

    given = client.get("/health/live", headers={"X-Request-ID": "abc-123"})
    made = client.get("/products")
    insane = client.get("/nope", headers={"X-Request-ID": "bad id\twith tab"})

    assert given.headers["x-request-id"] == "abc-123"
    assert len(made.headers["x-request-id"]) == 32
    assert insane.headers["x-request-id"] != "bad id\twith tab"
    assert problem_of(insane, 404, "not_found")["instance"] == "/nope"


def test_a_query_parameter_given_twice_is_422_naming_it(ann: User) -> None:
    twice = ann.client.get(
        "/notifications?limit=5&offset=x&offset=2", headers=ann.headers()
    )
    once = ann.client.get("/notifications?limit=5&offset=2", headers=ann.headers())

    assert (
        "'offset' is given more than once"
        in problem_of(twice, 422, "invalid_input")["detail"]
    )
    assert once.status_code == 200


def test_malformed_json_is_400_and_a_wrong_method_405(ann: User) -> None:
    malformed = ann.client.post(
        "/orders",
        headers={**ann.headers(), "Content-Type": "application/json"},
        content=b'{"items": [',
    )
    wrong = ann.client.put("/orders", headers=ann.headers(), json={})

    problem_of(malformed, 400, "bad_request")
    problem_of(wrong, 405, "method_not_allowed")


def test_a_body_over_the_limit_is_413_announced_or_not(
    system: System, ann: User
) -> None:
    limit = system.settings.max_body_bytes
    big = b'{"items": [], "pad": "' + b"x" * limit + b'"}'

    announced = ann.client.post(
        "/orders",
        headers={**ann.headers(), "Content-Type": "application/json"},
        content=big,
    )
    streamed = ann.client.post(
        "/orders",
        headers={**ann.headers(), "Content-Type": "application/json"},
        content=iter([big[:1000], big[1000:]]),  # chunked: no Content-Length
    )

    problem_of(announced, 413, "payload_too_large")
    problem_of(streamed, 413, "payload_too_large")


def test_over_the_rate_limit_is_429_per_client(
    system: System, gateway_with: Any, ann: User, bob: User
) -> None:
    client = gateway_with(
        rate_limit_per_minute=5, cache_prefix=f"rl-{uuid.uuid4().hex[:8]}"
    )

    replies = [client.get("/users/me", headers=ann.headers()) for _ in range(6)]
    other = client.get("/users/me", headers=bob.headers())
    health = client.get("/health/live")

    assert [r.status_code for r in replies] == [200] * 5 + [429]
    assert replies[0].headers["ratelimit-limit"] == "5"
    assert replies[4].headers["ratelimit-remaining"] == "0"
    problem = problem_of(replies[5], 429, "rate_limited")
    assert 1 <= int(replies[5].headers["retry-after"]) <= 60
    assert "5 requests" in problem["detail"]
    assert other.status_code == 200
    assert health.status_code == 200


def test_a_retried_post_with_an_idempotency_key_creates_nothing_new(
    system: System, admin: User, ann: User, bob: User
) -> None:
    book = system.product(admin)
    body = {"items": [{"product_id": book["product_id"], "quantity": 1}]}
    key = {"Idempotency-Key": uuid.uuid4().hex}

    first = ann.client.post("/orders", headers={**ann.headers(), **key}, json=body)
    retry = ann.client.post("/orders", headers={**ann.headers(), **key}, json=body)
    changed = ann.client.post(
        "/orders", headers={**ann.headers(), **key}, json={"items": []}
    )
    other_client = bob.client.post(
        "/orders", headers={**bob.headers(), **key}, json=body
    )
    listed = ann.client.get(
        "/orders",
        headers=ann.headers(),
        params={"after_position": first.json()["position"]},
    ).json()

    assert first.status_code == 201, first.text
    assert retry.status_code == 201
    assert retry.json() == first.json()
    assert retry.headers["location"] == first.headers["location"]
    assert retry.headers["idempotent-replayed"] == "true"
    assert "idempotent-replayed" not in first.headers
    problem_of(changed, 422, "invalid_input")
    assert other_client.status_code == 201
    assert other_client.json()["id"] != first.json()["id"]
    assert listed["total"] == 1


def test_a_refused_post_is_replayed_as_refused(system: System, ann: User) -> None:
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"items": [{"product_id": str(uuid.uuid4()), "quantity": 1}]}

    first = ann.client.post("/orders", headers={**ann.headers(), **key}, json=body)
    retry = ann.client.post("/orders", headers={**ann.headers(), **key}, json=body)

    assert first.status_code == retry.status_code == 422
    assert retry.json()["detail"] == first.json()["detail"]


def test_a_broker_that_is_down_is_503_and_the_gateway_not_ready(
    gateway_with: Any,
) -> None:
    client = gateway_with(rabbitmq_url="amqp://guest:guest@127.0.0.1:1//")

    products = client.get("/products")
    ready = client.get("/health/ready")
    live = client.get("/health/live")

    problem = problem_of(products, 503, "unavailable")
    assert "RabbitMQ" in problem["detail"]
    assert "guest" not in products.text
    assert problem_of(ready, 503, "unavailable")["checks"]["rabbitmq"].startswith(
        "down"
    )
    assert live.status_code == 200


def test_a_service_that_is_down_is_503_and_a_slow_one_504(
    system: System, gateway_with: Any, ann: User
) -> None:
    nobody = gateway_with(
        messaging_prefix=f"test-nobody-{uuid.uuid4().hex[:6]}", rpc_timeout=0.5
    )
    # No service answers within a millisecond.
    impatient = gateway_with(rpc_timeout=0.001)

    down = nobody.get("/products")
    # Found down once, it is asked about at the broker instead of waited for.
    still_down = nobody.get("/products", params={"limit": 5})
    not_ready = nobody.get("/health/ready")
    slow = impatient.get(f"/orders/{uuid.uuid4()}", headers=ann.headers())
    # A write that never happened is not waited for.
    never = ann.client.get(
        f"/orders/{uuid.uuid4()}",
        headers=ann.headers(),
        params={"after_position": 10**9},
    )

    assert "catalog service" in problem_of(down, 503, "unavailable")["detail"]
    assert "catalog service" in problem_of(still_down, 503, "unavailable")["detail"]
    assert problem_of(not_ready, 503, "unavailable")["checks"]["orders"].startswith(
        "down"
    )
    problem_of(slow, 504, "timeout")
    assert fields_of(problem_of(never, 422, "invalid_input")) == {"after_position"}


def test_a_version_or_position_beyond_the_bound_is_invalid_input_not_a_500(
    system: System, admin: User, ann: User
) -> None:
    # Given an order of ann's
    order = ann.client.post(
        "/orders",
        headers=ann.headers(),
        json={
            "items": [
                {"product_id": system.product(admin)["product_id"], "quantity": 1}
            ]
        },
    ).json()
    huge = 2**53

    # When she names a version or a position beyond 2**53 - 1
    submit = ann.client.post(
        f"/orders/{order['id']}/submit",
        headers=ann.headers(),
        json={"expected_version": huge},
    )
    read = ann.client.get(
        f"/orders/{order['id']}", headers=ann.headers(), params={"after_position": huge}
    )
    products = ann.client.get("/products", params={"after_position": huge})

    # Then each is refused for that field, as any invalid input
    assert fields_of(problem_of(submit, 422, "invalid_input")) == {"expected_version"}
    assert fields_of(problem_of(read, 422, "invalid_input")) == {"after_position"}
    assert fields_of(problem_of(products, 422, "invalid_input")) == {"after_position"}


def test_text_with_a_nul_character_is_422_and_the_read_models_go_on(
    system: System, admin: User, ann: User
) -> None:
    # Given an order of ann's
    product = system.product(admin)["product_id"]
    order = ann.client.post(
        "/orders",
        headers=ann.headers(),
        json={"items": [{"product_id": product, "quantity": 1}]},
    ).json()

    # When she cancels it with a reason that holds U+0000 (PostgreSQL cannot
    # store it), then with a plain one
    nul = ann.client.post(
        f"/orders/{order['id']}/cancel",
        headers=ann.headers(),
        json={"reason": "no\u0000thanks"},
    )
    plain = ann.client.post(
        f"/orders/{order['id']}/cancel",
        headers=ann.headers(),
        json={"reason": "no thanks"},
    )

    # Then the first is refused for that field, and the second reaches the
    # read model, which a stored NUL would have stopped
    assert fields_of(problem_of(nul, 422, "invalid_input")) == {"reason"}
    assert "NUL character" in problem_of(nul, 422, "invalid_input")["detail"]
    assert plain.status_code == 200, plain.text
    read = ann.client.get(
        f"/orders/{order['id']}",
        headers=ann.headers(),
        params={"after_position": plain.json()["position"]},
    )
    assert read.status_code == 200, read.text
    assert read.json()["status"] == "CANCELLED"


def test_free_text_with_nul_or_only_blanks_is_refused_by_document_and_gateway(
    system: System, ann: User
) -> None:
    # Given the OpenAPI document's request bodies (they forbid unknown fields)
    schemas = system.client().get("/openapi.json").json()["components"]["schemas"]
    texts = {
        f"{name}.{field}": spec.get("pattern")
        for name, schema in schemas.items()
        if schema.get("additionalProperties") is False
        for field, spec in schema["properties"].items()
        if spec.get("type") == "string" and "enum" not in spec and "format" not in spec
    }
    # When ann changes her name to one holding U+0000, then to blanks (the
    # users service takes a name's whitespace away)
    renamed = ann.client.patch(
        "/users/me", headers=ann.headers(), json={"name": "Ann\u0000Smith"}
    )
    blank = ann.client.patch(
        "/users/me", headers=ann.headers(), json={"name": "\n\u3000 "}
    )

    # Then every free text field has a pattern that a NUL does not match ...
    assert {"ProfileChange.name", "Cancellation.reason", "Registration.email"} <= set(
        texts
    )
    refusing = {
        field
        for field, pattern in texts.items()
        if pattern and not re.search(pattern, "a\u0000b@c.d")
    }
    assert refusing == set(texts)
    # ... those the services strip of whitespace one that blanks do not match ...
    stripped = {
        "Registration.name",
        "NewUser.name",
        "ProfileChange.name",
        "NewProduct.name",
        "Cancellation.reason",
    }
    assert {f for f in stripped if not re.search(texts[f], "\t\u3000 \x1c")} == (
        stripped
    )
    # ... and the gateway refuses it itself, saying why
    problem = problem_of(renamed, 422, "invalid_input")
    assert fields_of(problem) == {"name"}
    assert "NUL character" in problem["detail"]
    assert "must not be blank" in problem_of(blank, 422, "invalid_input")["detail"]


def test_health(system: System) -> None:
    client = system.client()

    live = client.get("/health/live")
    ready = client.get("/health/ready")

    assert live.json() == {"status": "ok", "checks": {}}
    assert ready.status_code == 200, ready.text
    assert set(ready.json()["checks"]) >= {"redis", "rabbitmq", "orders", "users"}


def test_cors_is_off_unless_origins_are_configured(
    system: System, gateway_with: Any
) -> None:
    allowed = gateway_with(cors_origins=["https://shop.example"])
    preflight = {
        "Origin": "https://shop.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "Authorization, Idempotency-Key",
    }

    ok = allowed.options("/orders", headers=preflight)
    other = allowed.options(
        "/orders", headers={**preflight, "Origin": "https://evil.example"}
    )
    default = system.client().get(
        "/products", headers={"Origin": "https://shop.example"}
    )

    assert ok.status_code == 200
    assert ok.headers["access-control-allow-origin"] == "https://shop.example"
    assert "access-control-allow-origin" not in other.headers
    assert "access-control-allow-origin" not in default.headers


def test_the_openapi_document_and_swagger_ui(system: System) -> None:
    client = system.client()

    document = client.get("/openapi.json").json()
    ui = client.get("/docs")

    assert ui.status_code == 200
    assert "swagger-ui" in ui.text
    assert document["components"]["schemas"]["Problem"]["required"]
    post_orders = document["paths"]["/orders"]["post"]
    assert set(post_orders["responses"]) >= {"201", "401", "409", "413", "422", "429"}
    assert "examples" in document["components"]["schemas"]["NewOrder"]
    security = document["components"]["securitySchemes"]
    assert security["HTTPBearer"]["scheme"] == "bearer"


def test_a_problem_never_shows_a_traceback(system: System, ann: User) -> None:
    replies = [
        ann.client.get(f"/orders/{uuid.uuid4()}", headers=ann.headers()),
        ann.client.post("/orders", headers=ann.headers(), json={"items": "x"}),
        ann.client.get("/products", params={"limit": -1}),
        system.client().get("/orders"),
    ]

    for reply in replies:
        assert reply.headers["content-type"] == "application/problem+json"
        assert "Traceback" not in reply.text
        assert 'File "' not in reply.text
    assert fields_of(replies[1].json()) == {"items"}


def test_the_http_client_sees_json_on_success(system: System) -> None:
    reply = httpx.get(f"{system.url}/products")

    assert reply.headers["content-type"] == "application/json"


def test_metrics_count_requests_by_route_template_and_status(
    system: System, ann: User
) -> None:
    missing = uuid.uuid4()
    ann.client.get(f"/orders/{missing}", headers=ann.headers())
    system.client().get(f"/no/such/{missing}")

    text = system.client().get("/metrics").text

    assert (
        'ordersys_http_requests_total{method="GET",route="/orders/{order_id}",'
        'status="404"}' in text
    )
    assert 'route="(unmatched)"' in text
    assert str(missing) not in text
    assert "ordersys_http_request_seconds_bucket" in text


def test_without_redis_reads_still_work_and_idempotent_posts_are_503(
    system: System, gateway_with: Any, ann: User
) -> None:
    client = gateway_with(redis_url="redis://127.0.0.1:1/0")
    headers = ann.headers()

    products = client.get("/products")
    me = client.get("/users/me", headers=headers)
    keyed = client.post(
        "/orders", headers={**headers, "Idempotency-Key": "k-1"}, json={"items": []}
    )
    ready = client.get("/health/ready")

    assert products.status_code == 200, products.text
    assert me.status_code == 200, me.text
    assert "Redis" in problem_of(keyed, 503, "unavailable")["detail"]
    assert problem_of(ready, 503, "unavailable")["checks"]["redis"].startswith("down")


def claimed_by(system: System, user: User, key: str, body: bytes) -> tuple[str, str]:
    """The Redis key of ``user``'s claim on ``key`` for ``POST /orders`` with
    ``body``, and that request's fingerprint, as the gateway writes them."""
    fingerprint = hashlib.sha256(b"/orders\0\0" + body).hexdigest()
    claim = (
        f"{system.settings.cache_prefix}:gateway:idempotency:user:{user.user_id}:"
        f"{hashlib.sha256(key.encode()).hexdigest()}"
    )
    return claim, fingerprint


def test_the_claim_of_a_gateway_that_died_lapses_and_the_retry_runs(
    system: System, ann: User
) -> None:
    # Given a key claimed by a request whose gateway died (its claim, as the
    # gateway writes it, and nobody renews it)
    key = uuid.uuid4().hex
    body = b'{"items": []}'
    claim, fingerprint = claimed_by(system, ann, key, body)
    client = redis.Redis.from_url(system.settings.redis_url)
    pending = json.dumps({"state": "pending", "fingerprint": fingerprint})
    client.set(claim, pending, ex=PENDING_SECONDS)
    headers = {
        **ann.headers(),
        "Idempotency-Key": key,
        "Content-Type": "application/json",
    }

    # When the client retries until it gets an answer
    answers = []
    try:
        for _ in range(PENDING_SECONDS * 4 + 8):
            reply = ann.client.post("/orders", headers=headers, content=body)
            answers.append(reply.status_code)
            if reply.status_code != 409:
                break
            time.sleep(0.5)
        time.sleep(0.5)  # the answer is kept just after it is sent
        replayed = ann.client.post("/orders", headers=headers, content=body)
    finally:
        client.delete(claim)
        client.close()

    # Then it is refused while the claim lives, runs once it lapsed, and its
    # answer is kept
    assert answers[0] == 409
    assert answers[-1] == 201, answers
    assert replayed.status_code == 201
    assert replayed.headers["idempotent-replayed"] == "true"


def test_a_request_that_runs_longer_than_a_claim_lives_keeps_its_claim(
    system: System, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given claims that live 2 s, and a POST that takes 5 s
    monkeypatch.setattr(idempotency, "PENDING_SECONDS", 2)

    async def slow(scope: Any, receive: Any, send: Any) -> None:
        await asyncio.sleep(5)
        await send({"type": "http.response.start", "status": 201, "headers": []})
        await send({"type": "http.response.body", "body": b"{}"})

    async def run() -> tuple[list[int], int]:
        store = aioredis.Redis.from_url(system.settings.redis_url)
        tokens = Tokens(b"k" * 32, 300, 600)
        prefix = f"{system.settings.cache_prefix}:renewal-{uuid.uuid4().hex[:6]}"
        app = idempotency.IdempotencyMiddleware(slow, store, tokens, prefix)
        transport = httpx.ASGITransport(app=app)
        headers = {"Idempotency-Key": "k1"}
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as c:
            first = asyncio.create_task(c.post("/orders", headers=headers))
            await asyncio.sleep(4)  # twice the claim's life
            retry = await c.post("/orders", headers=headers)
            done = await first
            again = await c.post("/orders", headers=headers)
        await store.aclose()
        return [retry.status_code, done.status_code, again.status_code], 0

    # When it is retried after twice the claim's life, while it still runs
    statuses, _ = asyncio.run(run())

    # Then the retry finds the claim renewed (409), and after the answer, it
    assert statuses == [409, 201, 201]


def test_a_retry_while_the_first_request_still_runs_is_409(
    system: System, ann: User
) -> None:
    key = uuid.uuid4().hex
    body = b'{"items": []}'
    claim, fingerprint = claimed_by(system, ann, key, body)
    client = redis.Redis.from_url(system.settings.redis_url)
    # The first request has claimed the key and not answered yet.
    client.set(claim, json.dumps({"state": "pending", "fingerprint": fingerprint}))
    try:
        retry = ann.client.post(
            "/orders",
            headers={
                **ann.headers(),
                "Idempotency-Key": key,
                "Content-Type": "application/json",
            },
            content=body,
        )
    finally:
        client.delete(claim)
        client.close()

    problem_of(retry, 409, "conflict")
    assert retry.headers["retry-after"] == "1"
