"""The gateway's FastAPI application: routes, middleware, problems, health."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import redis.asyncio as aioredis
from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.utils import get_openapi
from kombu.connection import Connection
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.responses import Response

from ordersys import __version__
from ordersys.errors import InfrastructureUnavailable
from ordersys.settings import Settings, address_of
from ordersys.shop.gateway import admin, orders, problems, products, users
from ordersys.shop.gateway.auth import Tokens, secret_of
from ordersys.shop.gateway.backend import Backend
from ordersys.shop.gateway.batching import Batched
from ordersys.shop.gateway.context import Gateway, gateway
from ordersys.shop.gateway.fastpath import CachedOrderReads
from ordersys.shop.gateway.idempotency import IdempotencyMiddleware
from ordersys.shop.gateway.metrics import HttpMetricsMiddleware
from ordersys.shop.gateway.middleware import BodyLimitMiddleware, RequestIdMiddleware
from ordersys.shop.gateway.models import Health
from ordersys.shop.gateway.ratelimit import RateLimitMiddleware, RateLimits
from ordersys.transport import Transport
from ordersys.transport.rabbitmq import KombuTransport

DESCRIPTION = """\
The public API of ordersys' order-management system.

Log in with `POST /auth/login`, then send the access token as
`Authorization: Bearer <token>` (the **Authorize** button). Errors are
[RFC 9457](https://www.rfc-editor.org/rfc/rfc9457) problem bodies
(`application/problem+json`) with a `code` and, for invalid input, the fields.
A POST may carry an `Idempotency-Key`: a retry with the same key answers the
first result and changes nothing. A write answers the `position` it produced;
pass it as `after_position` to a read to see that write.
"""


def create_app(
    settings: Settings,
    transport: Transport,
    *,
    services: Sequence[str] | None = None,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    """The gateway in front of ``transport``'s services. ``services`` are those
    ``/health/ready`` requires to be consuming (default: every bundled one);
    ``registry`` gets the HTTP metrics, served at ``/metrics``."""
    registry = registry if registry is not None else CollectorRegistry()
    redis = aioredis.Redis.from_url(
        settings.redis_url, socket_timeout=2, socket_connect_timeout=2
    )
    tokens = Tokens(
        secret_of(settings), settings.jwt_access_seconds, settings.jwt_refresh_seconds
    )
    backend = Backend(transport, settings.rpc_timeout)
    batched = Batched(redis)
    state = Gateway(settings, backend, redis, tokens, batched)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await redis.aclose()
        backend.close()

    app = FastAPI(
        title="ordersys API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.gateway = state
    app.state.tokens = tokens
    app.state.services = services
    problems.install(app)
    for router in (users.router, products.router, orders.router, admin.router):
        app.include_router(router)
    app.include_router(_health())

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    # Added innermost first: a request meets them in the reverse order.
    app.add_middleware(
        IdempotencyMiddleware, redis=redis, tokens=tokens, prefix=settings.cache_prefix
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    limits = RateLimits(
        batched, tokens, settings.rate_limit_per_minute, settings.cache_prefix
    )
    app.add_middleware(RateLimitMiddleware, limits=limits)
    app.add_middleware(
        CachedOrderReads,
        tokens=tokens,
        limits=limits,
        cache_prefix=settings.cache_prefix,
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "X-Request-ID",
            ],
            expose_headers=[
                "Location",
                "X-Request-ID",
                "Retry-After",
                "Idempotent-Replayed",
            ],
        )
    app.add_middleware(RequestIdMiddleware)
    if settings.otlp_endpoint:
        # A server span per request; the services' spans become its children.
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, excluded_urls="health/,metrics")
    app.openapi = lambda: _openapi(app)  # type: ignore[method-assign]
    templates = [*app.openapi()["paths"], "/metrics"]
    app.add_middleware(HttpMetricsMiddleware, registry=registry, templates=templates)
    return app


def _openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        schema = get_openapi(
            title=app.title,
            version=app.version,
            description=app.description,
            routes=app.routes,
        )
        schema.setdefault("components", {}).setdefault("schemas", {})["Problem"] = (
            problems.PROBLEM_SCHEMA
        )
        for path, operations in schema["paths"].items():
            for operation in operations.values():
                _document_problems(path, operation)
        app.openapi_schema = schema
    return app.openapi_schema


def _document_problems(path: str, operation: dict[str, Any]) -> None:
    """Every problem an operation can answer, in its ``responses``: those of
    every request, and those its body, token, role and path parameters add."""
    statuses = [422, 429, 500, 503, 504]
    if "requestBody" in operation:
        statuses += [400, 413]
    if operation.get("security"):
        statuses.append(401)
    if path.startswith("/admin/"):
        statuses.append(403)
    if "{" in path:
        statuses.append(404)
    responses = operation.setdefault("responses", {})
    for status, entry in problems.responses(*statuses).items():
        responses.setdefault(str(status), entry)
    # FastAPI's own 422 schema is not what the gateway answers.
    responses["422"] = problems.responses(422)[422]


def _health() -> Any:
    from fastapi import APIRouter

    router = APIRouter(prefix="/health", tags=["health"])

    @router.get("/live", response_model=Health, summary="The gateway is running")
    async def live() -> Any:
        return {"status": "ok", "checks": {}}

    @router.get(
        "/ready",
        response_model=Health,
        summary="Redis, RabbitMQ and every service can be reached",
        responses=problems.responses(503),
    )
    async def ready(request: Request) -> Any:
        gw = gateway(request)
        checks: dict[str, str] = {}
        try:
            await gw.redis.ping()
            checks["redis"] = "ok"
        except Exception as e:
            checks["redis"] = f"down: {e}"
        services = request.app.state.services
        checks.update(await gw.backend.run(_broker_checks, gw.settings, services))
        down = {k: v for k, v in checks.items() if v != "ok"}
        if down:
            summary = ", ".join(f"{k} {v}" for k, v in down.items())
            return problems.problem_response(
                request.scope, 503, f"not ready: {summary}", checks=checks
            )
        return {"status": "ok", "checks": checks}

    return router


def _broker_checks(
    settings: Settings, services: Sequence[str] | None
) -> dict[str, str]:
    """RabbitMQ answers, and each service's request queue has a consumer."""
    if services is None:
        from ordersys.shop.services import SERVICES

        services = [name for name in SERVICES if name != "gateway"]
    checks: dict[str, str] = {}
    try:
        with Connection(settings.rabbitmq_url, connect_timeout=2) as connection:  # type: ignore[no-untyped-call]
            connection.ensure_connection(max_retries=1)
            checks["rabbitmq"] = "ok"
            transport = KombuTransport(
                settings.rabbitmq_url, prefix=settings.messaging_prefix
            )
            for service in services:
                name = transport.service_queue(service).name
                channel = connection.channel()
                try:
                    _, _, consumers = channel.queue_declare(name, passive=True)
                    checks[service] = "ok" if consumers else "down: no consumer"
                except Exception:
                    checks[service] = "down: no queue"
                finally:
                    with contextlib.suppress(Exception):
                        channel.close()
    except Exception as e:
        unavailable = InfrastructureUnavailable(
            "RabbitMQ", address_of(settings.rabbitmq_url), str(e)
        )
        checks["rabbitmq"] = f"down: {unavailable.message}"
    return checks
