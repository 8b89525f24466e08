"""``/health/live`` and ``/health/ready``: whether the gateway can serve.

Readiness asks what a request needs, the way a request asks it: Redis answers
a ping, the broker a connection, and every service a ping over the gateway's
own transport within :data:`PING_SECONDS`. A service that is there but does not
answer (frozen, overloaded, stuck) is not ready, although its queue still has
a consumer.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Request

from ordersys.doctor import rabbitmq_version
from ordersys.errors import OrdersysError, RequestTimeout
from ordersys.settings import Settings
from ordersys.shop.gateway import problems
from ordersys.shop.gateway.context import Gateway, gateway
from ordersys.shop.gateway.models import Health
from ordersys.transport import Envelope, Transport, ping_type

PING_SECONDS = 2.0
"""How long a service has to answer readiness' ping."""

router = APIRouter(prefix="/health", tags=["health"])


@router.get("/live", response_model=Health, summary="The gateway is running")
async def live() -> Any:
    return {"status": "ok", "checks": {}}


@router.get(
    "/ready",
    response_model=Health,
    summary="Redis, RabbitMQ and every service answer",
    description=f"503 names what did not answer; each service has "
    f"{PING_SECONDS} s to answer a ping over the gateway's transport.",
    responses=problems.responses(503),
)
async def ready(request: Request) -> Any:
    gw = gateway(request)
    services = request.app.state.services or bundled_services()
    checks = {"redis": await _redis(gw)}
    if gw.backend.transport.broker() is not None:
        checks["rabbitmq"] = await gw.backend.run(_broker, gw.settings)
    answers = await asyncio.gather(
        *(gw.backend.run(ping, gw.backend.transport, name) for name in services)
    )
    checks.update(zip(services, answers, strict=True))
    down = {k: v for k, v in checks.items() if v != "ok"}
    if down:
        summary = ", ".join(f"{k} {v}" for k, v in down.items())
        return problems.problem_response(
            request.scope, 503, f"not ready: {summary}", checks=checks
        )
    return {"status": "ok", "checks": checks}


def bundled_services() -> Sequence[str]:
    from ordersys.shop.services import SERVICES

    return [name for name in SERVICES if name != "gateway"]


def ping(transport: Transport, service: str) -> str:
    """``"ok"`` if ``service`` answers its ping in time, else why not."""
    envelope = Envelope.new(ping_type(service), {})
    try:
        transport.call(service, envelope, PING_SECONDS)
    except RequestTimeout:
        if not transport.is_served(service):
            return "down: no instance of it is running"
        return f"down: no answer within {PING_SECONDS} s"
    except OrdersysError as e:
        return f"down: {e.message}"
    return "ok"


async def _redis(gw: Gateway) -> str:
    try:
        await gw.redis.ping()
    except Exception as e:
        return f"down: {e}"
    return "ok"


def _broker(settings: Settings) -> str:
    try:
        rabbitmq_version(settings)
    except OrdersysError as e:
        return f"down: {e.message}"
    return "ok"
