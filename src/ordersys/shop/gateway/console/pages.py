"""The console's pages: server-rendered with Jinja2, refreshed by a little
script (``static/console.js``) that fetches the page's content again, and
actions as plain forms (POST, CSRF token, then back to the page)."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any
from uuid import UUID

from fastapi import APIRouter, Depends, Form, Request, Response
from fastapi.responses import FileResponse, RedirectResponse
from fastapi.routing import APIRoute
from fastapi.templating import Jinja2Templates

from ordersys.errors import (
    InvalidInput,
    NotFound,
    OrdersysError,
    Unauthenticated,
)
from ordersys.shop.gateway.console.session import (
    COOKIE,
    CSRF_FIELD,
    PATH,
    Session,
    checked_action,
)
from ordersys.shop.gateway.context import Gateway, call, gateway
from ordersys.shop.gateway.problems import from_error

HERE = Path(__file__).parent
STATIC = {
    "console.js": "text/javascript",
    "console.css": "text/css",
}
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.filters["pretty"] = lambda value: json.dumps(
    value, indent=2, sort_keys=True, default=str
)


class ConsoleRoute(APIRoute):
    """A console route: no session sends the browser to the login page, a
    session that is not an admin's gets the 403 page, and any other error
    a page saying what went wrong, never a traceback."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except Unauthenticated as e:
                if request.method == "GET":
                    return RedirectResponse(f"{PATH}/login", status_code=303)
                return _error_page(request, e)
            except OrdersysError as e:
                return _error_page(request, e)

        return guarded


router = APIRouter(prefix=PATH, route_class=ConsoleRoute, include_in_schema=False)


def _error_page(request: Request, error: OrdersysError) -> Response:
    status = from_error(request, error).status_code
    return templates.TemplateResponse(
        request,
        "error.html",
        {
            "status": status,
            "message": error.message,
            "session": None,
            "layout": "base.html",
        },
        status_code=status,
    )


def render(
    request: Request, name: str, session: Session | None, **context: Any
) -> Response:
    """A page, or only its content when the script asks to refresh it."""
    fragment = request.headers.get("x-console-fragment") == "1"
    return templates.TemplateResponse(
        request,
        name,
        {
            **context,
            "session": session,
            "csrf_field": CSRF_FIELD,
            "layout": "fragment.html" if fragment else "base.html",
        },
    )


def back(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def gw_of(request: Request) -> Gateway:
    return gateway(request)


# -- session -----------------------------------------------------------------


@router.get("")
async def home() -> Response:
    return back(f"{PATH}/overview")


@router.get("/login")
async def login_page(request: Request) -> Response:
    return render(request, "login.html", None, failed="")


@router.post("/login")
async def login(
    request: Request, email: str = Form(""), password: str = Form("")
) -> Response:
    try:
        profile = await call(
            request, "user.authenticate", email=email, password=password
        )
    except (Unauthenticated, InvalidInput, NotFound):
        page = render(request, "login.html", None, failed="wrong email or password")
        page.status_code = 401
        return page
    tokens = gateway(request).tokens
    token = tokens.issue(profile["user_id"], profile["role"])["access_token"]
    response = back(f"{PATH}/overview")
    response.set_cookie(
        COOKIE,
        token,
        max_age=tokens.access_seconds,
        path=PATH,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
    )
    return response


@router.post("/logout")
async def logout(_: Session = Depends(checked_action)) -> Response:  # noqa: B008
    response = back(f"{PATH}/login")
    response.delete_cookie(COOKIE, path=PATH)
    return response


@router.get("/static/{name}")
async def static(name: str) -> Response:
    if name not in STATIC:
        raise NotFound(f"no static file {name}")
    return FileResponse(HERE / "static" / name, media_type=STATIC[name])


def uuid_of(text: str, what: str) -> UUID:
    try:
        return UUID(text.strip())
    except ValueError:
        raise InvalidInput(f"{what} is not a UUID: {text[:60]!r}", field=what) from None
