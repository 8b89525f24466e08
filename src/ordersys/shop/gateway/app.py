"""The gateway's FastAPI application: routes, middleware, problems, health."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.responses import Response

from ordersys import __version__
from ordersys.shop.gateway import (
    admin,
    console,
    docs,
    health,
    openapi,
    orders,
    problems,
    products,
    users,
)
from ordersys.shop.gateway.auth import Tokens, secret_of
from ordersys.shop.gateway.backend import Backend
from ordersys.shop.gateway.batching import Batched
from ordersys.shop.gateway.context import Gateway
from ordersys.shop.gateway.fastpath import CachedOrderReads
from ordersys.shop.gateway.idempotency import IdempotencyMiddleware
from ordersys.shop.gateway.metrics import HttpMetricsMiddleware
from ordersys.shop.gateway.middleware import (
    BodyLimitMiddleware,
    RequestIdMiddleware,
    SingleQueryValues,
)
from ordersys.shop.gateway.placing import PlaceOrders
from ordersys.shop.gateway.ratelimit import RateLimitMiddleware, RateLimits
from ordersys.shop.gateway.state import in_redis, open_state
from ordersys.shop.settings import ShopSettings
from ordersys.transport import Transport

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
    settings: ShopSettings,
    transport: Transport,
    *,
    services: Sequence[str] | None = None,
    registry: CollectorRegistry | None = None,
) -> FastAPI:
    """The gateway in front of ``transport``'s services. ``services`` are those
    ``/health/ready`` requires to answer (default: every bundled one);
    ``registry`` gets the HTTP metrics, served at ``/metrics``."""
    registry = registry if registry is not None else CollectorRegistry()
    redis = open_state(settings)
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
        # Served by docs.install, from this process instead of a CDN.
        docs_url=None,
        redoc_url=None,
    )
    app.state.gateway = state
    app.state.tokens = tokens
    app.state.services = services
    app.state.registry = registry
    problems.install(app)
    for router in (users.router, products.router, orders.router, admin.router):
        app.include_router(router)
    app.include_router(console.router)
    app.include_router(health.router)
    docs.install(app)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    # Added innermost first: a request meets them in the reverse order.
    app.add_middleware(PlaceOrders, gateway=state)
    app.add_middleware(console.OrderRequests, redis=batched, prefix=state.prefix)
    app.add_middleware(
        IdempotencyMiddleware, redis=redis, tokens=tokens, prefix=settings.cache_prefix
    )
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    limits = RateLimits(
        batched, tokens, settings.rate_limit_per_minute, settings.cache_prefix
    )
    app.add_middleware(RateLimitMiddleware, limits=limits)
    if in_redis(settings):  # the documents it reads are in Redis
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
    app.add_middleware(SingleQueryValues)
    app.add_middleware(RequestIdMiddleware)
    if settings.otlp_endpoint:
        # A server span per request; the services' spans become its children.
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        FastAPIInstrumentor.instrument_app(app, excluded_urls="health/,metrics")
    app.openapi = lambda: openapi.document(app)  # type: ignore[method-assign]
    templates = [*app.openapi()["paths"], "/metrics"]
    app.add_middleware(HttpMetricsMiddleware, registry=registry, templates=templates)
    return app
