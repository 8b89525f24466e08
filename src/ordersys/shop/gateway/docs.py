"""The API's page for a browser, ``/docs`` (Swagger UI), served with its
scripts and styles from this process, so that it works on a machine with no
internet.

FastAPI's own pages load Swagger UI from a CDN. The assets here come from the
``fastapi-offline`` package (Swagger UI 5, which renders OpenAPI 3.1, the
version of FastAPI's document); nothing on the page loads from another host:
no favicon from elsewhere, no online validator badge. (There is no ``/redoc``:
ReDoc's page loads its logo from its vendor's site.)
"""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import (
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.staticfiles import StaticFiles
from starlette.responses import HTMLResponse

ASSETS = "/docs/assets"
OAUTH2_REDIRECT = "/docs/oauth2-redirect"
SWAGGER_UI = {
    # Swagger UI would show a badge image fetched from validator.swagger.io.
    "validatorUrl": None,
    "persistAuthorization": True,
}


def install(app: FastAPI) -> None:
    """Serve ``/docs`` and its assets for ``app`` (made with ``docs_url=None,
    redoc_url=None``, so that FastAPI's own pages are not there)."""
    assets = files("fastapi_offline") / "static"
    app.mount(ASSETS, StaticFiles(directory=str(assets)), name="docs-assets")
    title = app.title

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{title} - Swagger UI",
            oauth2_redirect_url=OAUTH2_REDIRECT,
            swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{ASSETS}/favicon.png",
            swagger_ui_parameters=SWAGGER_UI,
        )

    @app.get(OAUTH2_REDIRECT, include_in_schema=False)
    async def oauth2_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()
