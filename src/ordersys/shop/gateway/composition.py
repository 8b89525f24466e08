"""``ordersys run gateway``: the gateway's app on uvicorn, as a service.

It has the shape of the other services (:class:`~ordersys.service.Service`:
``start()``, ``stop()``, a context manager), so that the command line and
``ordersys up`` run it like them; it serves HTTP instead of a request queue.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import uvicorn
from fastapi import FastAPI

from ordersys.errors import InvalidInput
from ordersys.service import Service
from ordersys.shop.gateway.app import create_app
from ordersys.shop.settings import ShopSettings
from ordersys.transport import Transport

logger = logging.getLogger("ordersys.shop.gateway")

STARTUP_SECONDS = 30.0
GRACEFUL_SECONDS = 2
"""How long a stopping gateway lets requests in flight finish."""


@dataclass
class GatewayService(Service):
    """The gateway, served by uvicorn in a thread of this process."""

    settings: ShopSettings
    app: FastAPI | None = None
    server: uvicorn.Server | None = None
    thread: threading.Thread | None = None
    routes: list[str] = field(default_factory=list)

    def start(self) -> None:
        assert self.app is not None
        config = uvicorn.Config(
            self.app,
            host=self.settings.gateway_host,
            port=self.settings.gateway_port,
            log_level=self.settings.log_level.lower(),
            access_log=False,
            log_config=None,  # ordersys' logging, configured by the command line
            lifespan="on",
            # Idle keep-alive connections would otherwise hold a stop up for as
            # long as their clients keep them open.
            timeout_graceful_shutdown=GRACEFUL_SECONDS,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(
            target=self._serve, args=(self.server,), name="gateway-http", daemon=True
        )
        self.thread.start()
        deadline = time.monotonic() + STARTUP_SECONDS
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                address = f"{self.settings.gateway_host}:{self.settings.gateway_port}"
                msg = (
                    f"the gateway cannot listen on {address} (in use, or not "
                    "allowed): choose another with ORDERSYS_GATEWAY_PORT"
                )
                raise InvalidInput(msg, field="gateway_port")
            time.sleep(0.02)
        self.started = True
        logger.info("gateway listening on %s", self.url)

    @staticmethod
    def _serve(server: uvicorn.Server) -> None:
        # uvicorn exits (SystemExit) when it cannot bind, having logged why;
        # start() sees the thread end and says which setting to change.
        with contextlib.suppress(SystemExit):
            server.run()

    @property
    def port(self) -> int:
        """The port it listens on (the one picked, when the setting is 0)."""
        if self.server is not None and self.server.servers:
            sockets = self.server.servers[0].sockets
            if sockets:
                return int(sockets[0].getsockname()[1])
        return self.settings.gateway_port

    @property
    def url(self) -> str:
        return f"http://{self.settings.gateway_host}:{self.port}"

    def handled(self) -> list[str]:
        return self.routes

    def stop(self) -> None:
        if self.app is not None:
            self.app.state.gateway.backend.stop_waiting()
        if self.server is not None:
            self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(GRACEFUL_SECONDS + 1)
        self.transport.close()
        self.started = False

    def __enter__(self) -> GatewayService:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def build(settings: ShopSettings, transport: Transport) -> Service:
    """The gateway in front of the services reached over ``transport``; its
    metrics are served at ``/metrics`` on its own HTTP port."""
    service = GatewayService("gateway", settings, transport)
    app = create_app(settings, transport, registry=service.registry)
    service.app = app
    service.routes = sorted(
        f"{method.upper()} {path}"
        for path, operations in app.openapi()["paths"].items()
        for method in operations
    )
    return service
