"""The console's session: the gateway's own access token, in a cookie.

Logging in asks the users service, as ``POST /auth/login`` does, and keeps the
access token in an HttpOnly, SameSite=Strict cookie scoped to ``/console``:
page scripts cannot read it and other sites cannot send it. Every action (a
POST) also carries a CSRF token derived from the session's token, which a page
of another origin cannot know; it is checked before anything is done.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from fastapi import Request

from ordersys.errors import Forbidden, Unauthenticated
from ordersys.shop.gateway.auth import Principal, principal_of

COOKIE = "ordersys_console"
PATH = "/console"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True)
class Session:
    """A logged-in admin, and the CSRF token of the session."""

    principal: Principal
    csrf: str


def csrf_for(token: str) -> str:
    """The CSRF token of the session holding ``token``: an HMAC keyed by the
    token itself, so it needs no server state and changes with each login."""
    return hmac.new(
        token.encode(), b"ordersys console csrf", hashlib.sha256
    ).hexdigest()


def session_of(request: Request) -> Session:
    """The caller's session; :class:`Unauthenticated` without a valid one,
    :class:`Forbidden` unless it is an admin's."""
    token = request.cookies.get(COOKIE)
    if not token:
        raise Unauthenticated("log in to use the console")
    principal = principal_of(request, token)
    if not principal.is_admin:
        raise Forbidden("the console is for admins only")
    return Session(principal, csrf_for(token))


async def checked_action(request: Request) -> Session:
    """The session of an action: also checks its CSRF token (header or form
    field) against the session's."""
    session = session_of(request)
    sent = request.headers.get(CSRF_HEADER)
    if sent is None:
        form = await request.form()
        field = form.get(CSRF_FIELD)
        sent = field if isinstance(field, str) else ""
    if not hmac.compare_digest(sent, session.csrf):
        raise Forbidden("this action's CSRF token is missing or wrong")
    return session
