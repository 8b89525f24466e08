"""The API gateway: the bundled system's only public entry point.

A FastAPI application (:func:`ordersys.shop.gateway.app.create_app`) that turns HTTP
requests into commands and queries sent to the services over the transport,
with JWT authentication, object-level authorization, RFC 9457 problem bodies,
idempotent POSTs, per-client rate limits and read-your-writes. ``ordersys run
gateway`` serves it on uvicorn (:mod:`ordersys.shop.gateway.composition`).
"""

from ordersys.shop.gateway.app import create_app

__all__ = ["create_app"]
