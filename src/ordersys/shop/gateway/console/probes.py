"""How the console learns about the services: ``ops.*`` requests over the
transport (see :mod:`ordersys.operations`), and the broker's own counts of
the services' queues (consumers are replicas; ``<queue>.dlq`` holds the
queue's dead letters)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from ordersys.errors import OrdersysError
from ordersys.messaging import dlq
from ordersys.messaging.consumer import registered_queues
from ordersys.messaging.dlq import QueueCount
from ordersys.shop.gateway.context import Gateway
from ordersys.shop.services import SERVICES
from ordersys.transport import Envelope
from ordersys.transport.rabbitmq import KombuTransport

BACKENDS = tuple(name for name in SERVICES if name != "gateway")
OPS_TIMEOUT = 5.0
REGISTRY_SECONDS = 10.0
"""Seconds an ``ops.*`` request may take: the console shows a slow service as
not answering rather than wait for it."""


async def ask(gw: Gateway, service: str, message_type: str, **body: Any) -> Any:
    """The reply of ``service`` to an ``ops.*`` message (raises its error)."""
    envelope = Envelope.new(message_type, body)
    timeout = min(gw.settings.rpc_timeout, OPS_TIMEOUT)
    return await gw.backend.run(gw.backend.transport.call, service, envelope, timeout)


async def ask_each(
    gw: Gateway, services: list[str], message_type: str, **body: Any
) -> dict[str, Any]:
    """Each service's reply, at once; an error (or no answer) in place of the
    reply of a service that failed."""

    async def one(service: str) -> Any:
        try:
            return await ask(gw, service, message_type, **body)
        except OrdersysError as e:
            return e

    replies = await asyncio.gather(*(one(s) for s in services))
    return dict(zip(services, replies, strict=True))


def service_queue(gw: Gateway, service: str) -> str:
    transport = gw.backend.transport
    if isinstance(transport, KombuTransport):
        return str(transport.service_queue(service).name)
    return f"{gw.settings.messaging_prefix}.{service}.commands"


_registered: dict[str, tuple[float, list[str]]] = {}


def letter_queues(gw: Gateway) -> list[str]:
    """Every queue that may have dead letters: the services' request queues
    and the consumer queues registered in the database (asked again after
    ``REGISTRY_SECONDS``: a consumer queue appears when its service first
    starts, and the overview should not open a database connection each time)."""
    key = gw.settings.postgres_schema or gw.settings.messaging_prefix
    known = _registered.get(key)
    if known is None or time.monotonic() - known[0] > REGISTRY_SECONDS:
        consumers: list[str] = []
        # No registry yet means no consumer queue yet.
        with contextlib.suppress(Exception):
            consumers = registered_queues(gw.settings)
        known = _registered[key] = (time.monotonic(), consumers)
    return [*(service_queue(gw, s) for s in BACKENDS), *known[1]]


def count_queues(gw: Gateway, queues: list[str]) -> dict[str, QueueCount | None]:
    return dlq.count_queues(gw.settings.rabbitmq_url, queues)
