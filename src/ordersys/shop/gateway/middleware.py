"""ASGI middleware of the gateway: a request id on every response, a query
parameter given once, and a bounded request body. Plain ASGI (not Starlette's
``BaseHTTPMiddleware``), so that each costs little on the hot path."""

from __future__ import annotations

import os
import re
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ordersys.shop.gateway.problems import send_problem

REQUEST_ID = b"x-request-id"
_SANE_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """Takes the caller's ``X-Request-ID`` if it is sane, else makes one (32 hex
    digits); every
    response carries it, and problem bodies and service messages name it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = b""
        for name, value in scope["headers"]:
            if name == REQUEST_ID:
                given = value
                break
        raw = given if _SANE_ID.match(given) else os.urandom(16).hex().encode()
        scope.setdefault("state", {})["request_id"] = raw.decode()

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), (REQUEST_ID, raw)]
            await send(message)

        await self.app(scope, receive, send_with_id)


class SingleQueryValues:
    """Refuses (422) a query that gives a parameter more than once: no
    operation takes a list in its query, and the framework would silently keep
    one of the values."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        query: bytes = scope.get("query_string", b"")
        if scope["type"] == "http" and b"&" in query:
            seen: set[str] = set()
            for name, _ in parse_qsl(query.decode("latin-1"), keep_blank_values=True):
                if name in seen:
                    detail = f"the query parameter {name!r} is given more than once"
                    await send_problem(scope, send, 422, detail)
                    return
                seen.add(name)
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Reads a request's whole body up front, bounded: a larger one answers 413
    before any handler runs (whether or not it announced its length)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        too_large = f"the request body exceeds {self.max_bytes} bytes"
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    announced = int(value)
                except ValueError:
                    await send_problem(
                        scope, send, 400, "Content-Length is not a number"
                    )
                    return
                if announced > self.max_bytes:
                    await send_problem(scope, send, 413, too_large)
                    return
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await send_problem(scope, send, 413, too_large)
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        body = b"".join(chunks)
        scope.setdefault("state", {})["body"] = body
        await self.app(scope, replay(body, receive), send)


def replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that hands over ``body`` once, then waits on ``receive``
    (for the client's disconnect)."""
    sent = False

    async def replayed() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed
