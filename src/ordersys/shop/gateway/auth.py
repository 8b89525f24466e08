"""Who is calling: JWT access and refresh tokens (HS256 only, expiry enforced).

An access token is short-lived and names the user (``sub``) and role; a refresh
token lives longer and buys a new pair once: refreshing records its ``jti`` in
Redis, so a stolen refresh token used after its owner (or vice versa) is refused.
The algorithm is pinned on both sides: a token signed with anything but HS256,
or with ``alg: none``, is refused before its claims are looked at.
"""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import jwt
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import Scope

from ordersys.errors import Forbidden, InvalidInput, Unauthenticated
from ordersys.shop.settings import ShopSettings

logger = logging.getLogger("ordersys.shop.gateway")

ALGORITHM = "HS256"
ISSUER = "ordersys-gateway"
AUDIENCE = "ordersys"
MIN_SECRET_LENGTH = 32
VERIFIED_TOKENS = 10_000
"""How many verified access tokens are remembered (oldest forgotten first)."""

TokenType = Literal["access", "refresh"]


@dataclass(frozen=True)
class Principal:
    """The authenticated caller: a user id and a role."""

    subject: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


def secret_of(settings: ShopSettings) -> bytes:
    """The signing key: ``jwt_secret``, or a random one for this process."""
    secret = settings.jwt_secret.get_secret_value()
    if not secret:
        logger.warning(
            "ORDERSYS_JWT_SECRET is not set: tokens are signed with a random key "
            "and do not outlive this gateway process"
        )
        return secrets.token_bytes(32)
    if len(secret) < MIN_SECRET_LENGTH:
        msg = f"ORDERSYS_JWT_SECRET needs at least {MIN_SECRET_LENGTH} characters"
        raise InvalidInput(msg, field="jwt_secret")
    return secret.encode()


class Tokens:
    """Issues and checks the gateway's tokens."""

    def __init__(
        self, secret: bytes, access_seconds: int, refresh_seconds: int
    ) -> None:
        self._secret = secret
        self.access_seconds = access_seconds
        self.refresh_seconds = refresh_seconds
        self._verified: dict[str, tuple[Principal, int]] = {}

    def _encode(self, subject: str, role: str, kind: TokenType, seconds: int) -> str:
        now = int(time.time())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": subject,
            "role": role,
            "typ": kind,
            "iat": now,
            "exp": now + seconds,
            "jti": uuid.uuid4().hex,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def issue(self, subject: str, role: str) -> dict[str, Any]:
        """A new access and refresh token pair."""
        return {
            "access_token": self._encode(subject, role, "access", self.access_seconds),
            "refresh_token": self._encode(
                subject, role, "refresh", self.refresh_seconds
            ),
            "token_type": "bearer",
            "expires_in": self.access_seconds,
        }

    def verify(self, token: str, kind: TokenType) -> dict[str, Any]:
        """The claims of a valid token of ``kind``; :class:`Unauthenticated` if
        it is malformed, forged, of another algorithm or kind, or expired."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._secret,
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                options={"require": ["exp", "iat", "sub", "typ", "jti"]},
            )
        except jwt.ExpiredSignatureError:
            raise Unauthenticated(f"the {kind} token has expired") from None
        except jwt.PyJWTError:
            raise Unauthenticated(f"not a valid {kind} token") from None
        if claims.get("typ") != kind:
            raise Unauthenticated(f"not a valid {kind} token")
        return claims

    def principal(self, token: str) -> Principal:
        """The caller an access token names. A token's signature is checked
        once: a client sends the same token with each request, so the result
        is kept (bounded) with its expiry, which is checked every time."""
        known = self._verified.get(token)
        if known is not None:
            principal, expires = known
            if expires > time.time():
                return principal
            del self._verified[token]
        claims = self.verify(token, "access")
        principal = Principal(str(claims["sub"]), str(claims.get("role", "customer")))
        if len(self._verified) >= VERIFIED_TOKENS:
            self._verified.pop(next(iter(self._verified)))
        self._verified[token] = (principal, int(claims["exp"]))
        return principal


_bearer = HTTPBearer(auto_error=False, description="An access token from /auth/login")


def principal_of(request: Request, token: str) -> Principal:
    """The caller of ``request`` (verified once per request)."""
    state = request.scope.setdefault("state", {})
    cached = state.get("principal")
    if isinstance(cached, Principal):
        return cached
    tokens: Tokens = request.app.state.tokens
    principal = tokens.principal(token)
    state["principal"] = principal
    return principal


async def current_user(
    request: Request,
    credentials: HTTPAuthorizationCredentials | None = Depends(_bearer),  # noqa: B008
) -> Principal:
    """FastAPI dependency: the authenticated caller, or 401."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Unauthenticated("send an access token: Authorization: Bearer <token>")
    return principal_of(request, credentials.credentials)


async def admin_user(principal: Principal = Depends(current_user)) -> Principal:  # noqa: B008
    """FastAPI dependency: an authenticated admin, or 403."""
    if not principal.is_admin:
        raise Forbidden("this needs the admin role")
    return principal


def client_of(scope: Scope, tokens: Tokens) -> str:
    """Who a request counts against (rate limits, idempotency keys): the user of
    a valid bearer token, else the client's IP address. A forged or expired
    token counts as no token."""
    state = scope.setdefault("state", {})
    client = state.get("client")
    if isinstance(client, str):
        return client
    authorization = ""
    for name, value in scope.get("headers", ()):
        if name == b"authorization":
            authorization = value.decode("latin-1")
            break
    client = ""
    if authorization[:7].lower() == "bearer ":
        try:
            principal = tokens.principal(authorization[7:].strip())
        except Unauthenticated:
            pass
        else:
            state["principal"] = principal
            client = f"user:{principal.subject}"
    if not client:
        peer = scope.get("client")
        client = f"ip:{peer[0] if peer else 'unknown'}"
    state["client"] = client
    return client
