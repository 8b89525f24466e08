"""Typed errors of the domain and of the infrastructure.

Handlers raise these; the edges (HTTP gateway, RPC replies) map them to replies
through :attr:`OrdersysError.code` and :attr:`OrdersysError.http_status`, and
:func:`error_from_dict` turns a reply back into the same exception type on the
caller's side.
"""

from __future__ import annotations

from typing import Any, ClassVar


class OrdersysError(Exception):
    """Base of every error ordersys raises on purpose."""

    code: ClassVar[str] = "error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def to_dict(self) -> dict[str, Any]:
        """The JSON-friendly form carried in message replies and problem bodies."""
        return {"code": self.code, "message": self.message, "details": self.details}


class NotFound(OrdersysError):
    """The addressed aggregate, read model or handler does not exist."""

    code = "not_found"
    http_status = 404


class Conflict(OrdersysError):
    """The caller's expected version is stale: someone else wrote first."""

    code = "conflict"
    http_status = 409


class BusinessRuleViolation(OrdersysError):
    """The command is well formed but the domain refuses it."""

    code = "business_rule_violated"
    http_status = 409


class Unauthenticated(OrdersysError):
    """The caller did not prove who it is: no, bad or expired credentials."""

    code = "unauthenticated"
    http_status = 401


class Forbidden(OrdersysError):
    """The caller is known but may not do this."""

    code = "forbidden"
    http_status = 403


class InvalidInput(OrdersysError):
    """A message, payload or setting does not have the required shape."""

    code = "invalid_input"
    http_status = 422


class StorageTaken(InvalidInput):
    """An application opened storage that another application class owns:
    two classes with one name would append to each other's tables."""

    code = "storage_taken"


class HandlerNotFound(OrdersysError):
    """No handler is registered for a message type."""

    code = "handler_not_found"
    http_status = 501


class InfrastructureUnavailable(OrdersysError):
    """A server (PostgreSQL, RabbitMQ, Redis) cannot be reached."""

    code = "unavailable"
    http_status = 503

    def __init__(self, server: str, address: str, reason: str) -> None:
        super().__init__(
            f"{server} is not reachable at {address}: {reason}",
            server=server,
            address=address,
        )
        self.server = server
        self.address = address
        self.reason = reason


class RequestTimeout(OrdersysError):
    """A reply did not arrive within its deadline."""

    code = "timeout"
    http_status = 504


_BY_CODE: dict[str, type[OrdersysError]] = {
    cls.code: cls
    for cls in (
        OrdersysError,
        NotFound,
        Conflict,
        BusinessRuleViolation,
        InvalidInput,
        StorageTaken,
        Unauthenticated,
        Forbidden,
        HandlerNotFound,
        RequestTimeout,
    )
}


def error_from_dict(data: dict[str, Any]) -> OrdersysError:
    """Rebuild the typed error described by :meth:`OrdersysError.to_dict`."""
    code = str(data.get("code", "error"))
    message = str(data.get("message", ""))
    details = data.get("details") or {}
    if code == InfrastructureUnavailable.code:
        return InfrastructureUnavailable(
            str(details.get("server", "a server")),
            str(details.get("address", "unknown address")),
            message,
        )
    return _BY_CODE.get(code, OrdersysError)(message, **details)
