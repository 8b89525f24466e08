"""ordersys: an event-sourcing framework on ``eventsourcing``, and the
order-management system built with it.

The public API is re-exported here; see docs/ for guides.
"""

from __future__ import annotations

__version__ = "0.1.0"

from ordersys.aggregates import Aggregate, event
from ordersys.application import Application
from ordersys.bus import MessageBus, Middleware
from ordersys.commands import Command, CommandBus, Written
from ordersys.errors import (
    BusinessRuleViolation,
    Conflict,
    HandlerNotFound,
    InfrastructureUnavailable,
    InvalidInput,
    NotFound,
    OrdersysError,
    RequestTimeout,
)
from ordersys.messages import Message
from ordersys.middleware import logging_middleware, timing_middleware
from ordersys.queries import Query, QueryBus
from ordersys.settings import Settings, load_settings

__all__ = [
    "Aggregate",
    "Application",
    "BusinessRuleViolation",
    "Command",
    "CommandBus",
    "Conflict",
    "HandlerNotFound",
    "InfrastructureUnavailable",
    "InvalidInput",
    "Message",
    "MessageBus",
    "Middleware",
    "NotFound",
    "OrdersysError",
    "Query",
    "QueryBus",
    "RequestTimeout",
    "Settings",
    "Written",
    "__version__",
    "event",
    "load_settings",
    "logging_middleware",
    "timing_middleware",
]
