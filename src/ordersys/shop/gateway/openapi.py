"""The gateway's OpenAPI document: FastAPI's, plus what FastAPI cannot know.

* Every status an operation can answer, with its problem body: those every
  request can get (rate limit, an unreachable service), and those its method,
  body, token, role and path parameters add, including the middleware's own
  (an ``Idempotency-Key`` retry still running is 409, a body too large 413, a
  method the path does not have 405 with an ``Allow`` header).
* OpenAPI links that join placing an order to what follows it (reading it at
  the position written, adding and removing items, submitting, cancelling,
  its payment and notifications), so that a client generator, or
  schemathesis' stateful phase, can walk an order's lifecycle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from ordersys.shop.gateway import problems

ORDER = "/orders/{order_id}"
WRITTEN_ID = "$response.body#/id"
WRITTEN_POSITION = "$response.body#/position"


@dataclass(frozen=True)
class Link:
    """A link to an operation; every link passes the written ``id`` as
    ``order_id``, plus ``parameters``."""

    name: str
    path: str
    method: str
    parameters: dict[str, str] = field(default_factory=dict)


_READ = Link("GetOrder", ORDER, "get", {"after_position": WRITTEN_POSITION})
_ADD = Link("AddItem", f"{ORDER}/items", "post")
_SUBMIT = Link("SubmitOrder", f"{ORDER}/submit", "post")
_CANCEL = Link("CancelOrder", f"{ORDER}/cancel", "post")
_PAYMENT = Link("GetPayment", f"{ORDER}/payment", "get")
_NOTIFICATIONS = Link("GetNotifications", f"{ORDER}/notifications", "get")
_REMOVE = Link(
    "RemoveItem",
    f"{ORDER}/items/{{product_id}}",
    "delete",
    {"product_id": "$request.body#/product_id"},
)

LINKS: dict[tuple[str, str, str], list[Link]] = {
    ("/orders", "post", "201"): [
        _READ,
        _ADD,
        _SUBMIT,
        _CANCEL,
        _PAYMENT,
        _NOTIFICATIONS,
    ],
    (f"{ORDER}/items", "post", "200"): [_READ, _REMOVE, _SUBMIT, _CANCEL],
    (f"{ORDER}/items/{{product_id}}", "delete", "200"): [_READ, _SUBMIT, _CANCEL],
    (f"{ORDER}/submit", "post", "202"): [_READ, _PAYMENT, _NOTIFICATIONS],
    (f"{ORDER}/cancel", "post", "200"): [_READ, _NOTIFICATIONS],
}
"""Per response (path, method, status): the operations its order leads to."""

ALLOW = {
    "Allow": {
        "description": "The methods this path has.",
        "schema": {"type": "string"},
    }
}


def document(app: FastAPI) -> dict[str, Any]:
    """``app``'s OpenAPI document, made once."""
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
            for method, operation in operations.items():
                _document_problems(path, method, operation)
        _link(schema["paths"])
        app.openapi_schema = schema
    return app.openapi_schema


def _document_problems(path: str, method: str, operation: dict[str, Any]) -> None:
    """Every problem an operation can answer, in its ``responses``."""
    statuses = [405, 422, 429, 500, 503, 504]
    if method != "get":
        # A body that is not JSON, or larger than allowed; a bad Content-Length.
        statuses += [400, 413]
    if method == "post":
        # Idempotency-Key: a retry while the first request still runs.
        statuses.append(409)
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
    responses["405"] = {**responses["405"], "headers": ALLOW}


def _link(paths: dict[str, Any]) -> None:
    for (path, method, status), targets in LINKS.items():
        response = paths[path][method]["responses"][status]
        response["links"] = {
            link.name: {
                "operationId": paths[link.path][link.method]["operationId"],
                "parameters": {"order_id": WRITTEN_ID, **link.parameters},
            }
            for link in targets
        }
