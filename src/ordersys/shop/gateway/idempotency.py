"""``Idempotency-Key`` on POST: a retried request returns the first answer.

The first request with a key (per client) claims it in Redis with ``SET NX``
and runs; its answer (status, body, ``Location``) is stored under the key for
a day. A retry with the same key and the same request gets that stored answer
(with ``Idempotent-Replayed: true``) and runs nothing, so nothing is created
twice. A retry while the first is still running answers 409; the same key with
a different request answers 422. An answer of 5xx is not stored: the key is
freed, so the client's retry runs again.

The claim lives ``PENDING_SECONDS`` and the running request renews it: the
claim of a gateway that died mid-request lapses within seconds, and the
client's retry then runs (a request that took effect before the death is
found again by the id its route derives from the key).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import logging
from typing import Any, cast

import redis.asyncio as aioredis
from redis.exceptions import RedisError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ordersys.shop.gateway.auth import Tokens, client_of
from ordersys.shop.gateway.problems import send_problem

logger = logging.getLogger("ordersys.shop.gateway")

HEADER = b"idempotency-key"
TTL_SECONDS = 24 * 3600
PENDING_SECONDS = 10
"""How long a claim outlives the request that holds it; renewed every third of
that while the request runs."""
RENEW = (
    "if redis.call('GET', KEYS[1]) == ARGV[1] then "
    "return redis.call('EXPIRE', KEYS[1], ARGV[2]) end return 0"
)
"""Renew a claim only while it is still this request's (never a kept answer)."""
KEPT_HEADERS = (b"content-type", b"location")


class IdempotencyMiddleware:
    def __init__(
        self, app: ASGIApp, redis: aioredis.Redis, tokens: Tokens, prefix: str
    ) -> None:
        self.app = app
        self.redis = redis
        self.tokens = tokens
        self.prefix = f"{prefix}:gateway:idempotency"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == HEADER), None)
        if given is None:
            await self.app(scope, receive, send)
            return
        if not 1 <= len(given) <= 255:
            await send_problem(
                scope, send, 400, "Idempotency-Key needs 1 to 255 characters"
            )
            return
        body: bytes = scope.get("state", {}).get("body", b"")
        fingerprint = hashlib.sha256(
            scope["path"].encode()
            + b"\0"
            + scope.get("query_string", b"")
            + b"\0"
            + body
        ).hexdigest()
        client = client_of(scope, self.tokens)
        key = f"{self.prefix}:{client}:{hashlib.sha256(given).hexdigest()}"
        # What names this request for good (a route may derive an id from it).
        scope["state"]["idempotency"] = f"{key}:{fingerprint}"
        claim = json.dumps({"state": "pending", "fingerprint": fingerprint})
        try:
            claimed = await self.redis.set(key, claim, nx=True, ex=PENDING_SECONDS)
            stored = None if claimed else cast(bytes | None, await self.redis.get(key))
        except RedisError as e:
            await send_problem(
                scope, send, 503, f"idempotency keys cannot be checked: Redis: {e}"
            )
            return
        if not claimed:
            await self._answer_again(scope, send, stored, fingerprint)
            return
        renewing = asyncio.create_task(self._renew(key, claim))
        try:
            await self._run_and_keep(scope, receive, send, key, fingerprint)
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing

    async def _renew(self, key: str, claim: str) -> None:
        while True:
            await asyncio.sleep(PENDING_SECONDS / 3)
            try:
                await self.redis.eval(RENEW, 1, key, claim, PENDING_SECONDS)
            except RedisError as e:
                logger.warning("idempotency claim not renewed: Redis: %s", e)

    async def _answer_again(
        self, scope: Scope, send: Send, stored: bytes | None, fingerprint: str
    ) -> None:
        entry: dict[str, Any] = json.loads(stored) if stored else {}
        if entry.get("fingerprint") != fingerprint:
            await send_problem(
                scope,
                send,
                422,
                "this Idempotency-Key was used for another request",
            )
            return
        if entry.get("state") != "done":
            await send_problem(
                scope,
                send,
                409,
                "a request with this Idempotency-Key is still being handled",
                headers={"Retry-After": "1"},
            )
            return
        headers = [(name.encode(), value.encode()) for name, value in entry["headers"]]
        await send(
            {
                "type": "http.response.start",
                "status": entry["status"],
                "headers": [*headers, (b"idempotent-replayed", b"true")],
            }
        )
        await send(
            {"type": "http.response.body", "body": base64.b64decode(entry["body"])}
        )

    async def _run_and_keep(
        self, scope: Scope, receive: Receive, send: Send, key: str, fingerprint: str
    ) -> None:
        status = 500
        headers: list[tuple[str, str]] = []
        chunks: list[bytes] = []

        async def keeping(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers.extend(
                    (k.decode("latin-1"), v.decode("latin-1"))
                    for k, v in message.get("headers", [])
                    if k.lower() in KEPT_HEADERS
                )
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))
            await send(message)

        try:
            await self.app(scope, receive, keeping)
        finally:
            await self._keep(key, fingerprint, status, headers, b"".join(chunks))

    async def _keep(
        self,
        key: str,
        fingerprint: str,
        status: int,
        headers: list[tuple[str, str]],
        body: bytes,
    ) -> None:
        try:
            if status >= 500:
                await self.redis.delete(key)
                return
            entry = {
                "state": "done",
                "fingerprint": fingerprint,
                "status": status,
                "headers": headers,
                "body": base64.b64encode(body).decode(),
            }
            await self.redis.set(key, json.dumps(entry), ex=TTL_SECONDS)
        except RedisError as e:
            logger.warning("idempotent answer not kept: Redis: %s", e)
