"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error the gateway answers has one shape: ``type``, ``title``, ``status``,
``detail``, ``instance`` (the request path), plus ``code`` (the machine-readable
reason, e.g. ``not_found``), ``request_id`` and, for invalid input, ``errors``:
one entry per field (``field``, ``in``, ``message``). An :class:`OrdersysError`
answers its ``http_status``; anything unexpected answers a bare 500 whose
traceback goes to the log, never to the client.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response
from starlette.routing import Match
from starlette.types import Scope, Send

from ordersys.errors import OrdersysError

logger = logging.getLogger("ordersys.shop.gateway")

PROBLEM_JSON = "application/problem+json"
TYPE_PREFIX = "urn:ordersys:problem:"

_CODES = {
    400: "bad_request",
    401: "unauthenticated",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_input",
    429: "rate_limited",
    500: "error",
    503: "unavailable",
    504: "timeout",
}


def request_id_of(scope: Scope) -> str:
    return str(scope.get("state", {}).get("request_id", ""))


def problem_body(
    scope: Scope, status: int, detail: str, code: str | None = None, **extra: Any
) -> dict[str, Any]:
    code = code or _CODES.get(status, "error")
    return {
        "type": TYPE_PREFIX + code,
        "title": _title(status),
        "status": status,
        "detail": detail,
        "instance": scope.get("path", ""),
        "code": code,
        "request_id": request_id_of(scope),
        **extra,
    }


def _title(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def problem_response(
    scope: Scope,
    status: int,
    detail: str,
    code: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> Response:
    body = problem_body(scope, status, detail, code, **extra)
    return Response(
        json.dumps(body, default=str),
        status_code=status,
        media_type=PROBLEM_JSON,
        headers=headers,
    )


async def send_problem(
    scope: Scope,
    send: Send,
    status: int,
    detail: str,
    headers: dict[str, str] | None = None,
) -> None:
    """Answer a problem straight from an ASGI middleware."""
    response = problem_response(scope, status, detail, headers=headers)

    async def no_body() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    await response(scope, no_body, send)


def from_error(request: Request, error: OrdersysError) -> Response:
    """The problem for a typed error; its details go along, minus internals."""
    status = error.http_status
    details = {k: v for k, v in error.details.items() if k != "address"}
    extra: dict[str, Any] = {}
    fields = details.pop("fields", None)
    if isinstance(fields, list):
        extra["errors"] = [
            {
                "field": str(f.get("field", "")),
                "in": "body",
                "message": f.get("message"),
            }
            for f in fields
            if isinstance(f, dict)
        ]
    elif "field" in details:
        extra["errors"] = [
            {"field": str(details["field"]), "in": "body", "message": error.message}
        ]
    if details:
        extra["details"] = details
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    detail = error.message
    if status >= 500:
        logger.warning("%s %s: %s", request.method, request.url.path, error.message)
    if status == 500:
        # An unexpected failure in a service: its text may show internals.
        detail, extra = "a service failed to handle the request", {}
    return problem_response(
        request.scope, status, detail, error.code, headers=headers, **extra
    )


def from_validation(request: Request, error: RequestValidationError) -> Response:
    """422 naming each field that is wrong; 400 when the body is not JSON at all."""
    errors = []
    malformed = False
    for each in error.errors():
        location = [str(part) for part in each.get("loc", ())]
        where = location[0] if location else "body"
        if each.get("type") == "json_invalid":
            malformed = True
        errors.append(
            {
                "field": ".".join(location[1:]) or where,
                "in": where,
                "message": str(each.get("msg", "invalid")),
            }
        )
    status = 400 if malformed else 422
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    detail = (
        "the body is not valid JSON" if malformed else f"invalid request: {summary}"
    )
    return problem_response(request.scope, status, detail, errors=errors)


def from_http(request: Request, error: HTTPException) -> Response:
    headers = dict(error.headers or {})
    if error.status_code == 405:
        headers["Allow"] = allowed_methods(request)
    return problem_response(
        request.scope, error.status_code, str(error.detail), headers=headers or None
    )


METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def allowed_methods(request: Request) -> str:
    """Every method of the request's path. (Starlette's 405 names those of the
    first route of the path only, and a path has a route per method.)"""
    routes = request.app.router.routes
    return ", ".join(
        method
        for method in METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] == Match.FULL
            for route in routes
        )
    )


def from_unexpected(request: Request, error: Exception) -> Response:
    logger.error("%s %s failed", request.method, request.url.path, exc_info=error)
    return problem_response(
        request.scope, 500, "the gateway failed to handle the request"
    )


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` with a problem body."""
    app.add_exception_handler(OrdersysError, from_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, from_validation)  # type: ignore[arg-type]
    app.add_exception_handler(HTTPException, from_http)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, from_unexpected)


PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "code": {"type": "string"},
        "request_id": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "field": {"type": "string"},
                    "in": {"type": "string"},
                    "message": {"type": "string"},
                },
            },
        },
        "details": {"type": "object"},
    },
}


def responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI ``responses`` entries: a problem body for each status."""
    return {
        status: {
            "description": _title(status),
            "content": {
                PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}
            },
        }
        for status in statuses
    }
