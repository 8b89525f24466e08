"""ordersys: an event-sourcing framework on ``eventsourcing``, and the
order-management system built with it.

The public API is re-exported here; see docs/ for guides.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from ordersys.aggregates import Aggregate, event
from ordersys.application import Application
from ordersys.bus import MessageBus, Middleware
from ordersys.commands import Command, CommandBus, Written
from ordersys.errors import (
    BusinessRuleViolation,
    Conflict,
    Forbidden,
    HandlerNotFound,
    InfrastructureUnavailable,
    InvalidInput,
    NotFound,
    OrdersysError,
    RequestTimeout,
    Unauthenticated,
)
from ordersys.extras import MissingExtra
from ordersys.messages import Message
from ordersys.middleware import logging_middleware, timing_middleware
from ordersys.processes import (
    BatchSender,
    BusSender,
    CommandSender,
    ProcessManager,
    ProcessRunner,
    Saga,
    send_batch,
)
from ordersys.projections import Projection, ProjectionRunner, ReadModel
from ordersys.queries import Query, QueryBus
from ordersys.readmodels import Documents
from ordersys.settings import Settings, load_settings
from ordersys.transport import Envelope, RpcSender, Transport, serve_bus
from ordersys.transport.memory import MemoryTransport

if TYPE_CHECKING:
    from ordersys.leases import Leases
    from ordersys.transport.rabbitmq import KombuTransport

_ADAPTERS = {
    "KombuTransport": "ordersys.transport.rabbitmq",
    "Leases": "ordersys.leases",
}
"""Public names whose modules need an extra: imported when first used, so that
``import ordersys`` loads no server client."""


def __getattr__(name: str) -> Any:
    # MissingExtra, naming the extra, if the adapter's client is not installed.
    if name in _ADAPTERS:
        return getattr(importlib.import_module(_ADAPTERS[name]), name)
    raise AttributeError(f"module 'ordersys' has no attribute {name!r}")


__all__ = [
    "Aggregate",
    "Application",
    "BatchSender",
    "BusSender",
    "BusinessRuleViolation",
    "Command",
    "CommandBus",
    "CommandSender",
    "Conflict",
    "Documents",
    "Envelope",
    "Forbidden",
    "HandlerNotFound",
    "InfrastructureUnavailable",
    "InvalidInput",
    "KombuTransport",
    "Leases",
    "MemoryTransport",
    "Message",
    "MessageBus",
    "Middleware",
    "MissingExtra",
    "NotFound",
    "OrdersysError",
    "ProcessManager",
    "ProcessRunner",
    "Projection",
    "ProjectionRunner",
    "Query",
    "QueryBus",
    "ReadModel",
    "RequestTimeout",
    "RpcSender",
    "Saga",
    "Settings",
    "Transport",
    "Unauthenticated",
    "Written",
    "__version__",
    "event",
    "load_settings",
    "logging_middleware",
    "send_batch",
    "serve_bus",
    "timing_middleware",
]
