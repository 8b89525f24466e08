"""The gateway's HTTP metrics, served at ``/metrics`` on its own port:
``ordersys_http_requests_total{route, method, status}`` and
``ordersys_http_request_seconds{route, method}``. ``route`` is the route's
template (``/orders/{order_id}``), never the path itself, so that ids do not
make a series each; a path no route matches counts as ``(unmatched)``."""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ordersys.observability.metrics import LATENCY_BUCKETS

UNMATCHED = "(unmatched)"


class Routes:
    """Finds the template of a path with one regular expression."""

    def __init__(self, templates: Sequence[str]) -> None:
        self.templates = list(templates)
        alternatives = []
        for index, template in enumerate(self.templates):
            parts = re.split(r"\{[^}]+\}", template)
            body = "[^/]+".join(re.escape(part) for part in parts)
            alternatives.append(f"(?P<r{index}>{body})")
        self._pattern = re.compile("^(?:" + "|".join(alternatives) + ")$")

    def of(self, path: str) -> str:
        found = self._pattern.match(path)
        if found is None or found.lastgroup is None:
            return UNMATCHED
        return self.templates[int(found.lastgroup[1:])]


class HttpMetricsMiddleware:
    """Counts and times every request, whatever answers it (a route, the fast
    path, or a middleware's problem)."""

    def __init__(
        self, app: ASGIApp, registry: CollectorRegistry, templates: Sequence[str]
    ) -> None:
        self.app = app
        self.routes = Routes(templates)
        self.requests = Counter(
            "ordersys_http_requests",
            "HTTP requests the gateway answered.",
            ["route", "method", "status"],
            registry=registry,
        )
        self.seconds = Histogram(
            "ordersys_http_request_seconds",
            "Time to answer an HTTP request.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self._counters: dict[tuple[str, str, int], Any] = {}
        self._timers: dict[tuple[str, str], Any] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = scope.get("state", {}).get("route") or self.routes.of(scope["path"])
            method = scope["method"]
            self._counter(route, method, status).inc()
            self._timer(route, method).observe(time.perf_counter() - started)

    def _counter(self, route: str, method: str, status: int) -> Any:
        # labels() looks the child up by strings each time: keep them.
        key = (route, method, status)
        child = self._counters.get(key)
        if child is None:
            child = self._counters[key] = self.requests.labels(
                route, method, str(status)
            )
        return child

    def _timer(self, route: str, method: str) -> Any:
        key = (route, method)
        child = self._timers.get(key)
        if child is None:
            child = self._timers[key] = self.seconds.labels(route, method)
        return child
