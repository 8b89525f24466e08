"""The operator console, served by the gateway at ``/console`` for admins:
the overview, an order's journey, sagas, projections, dead letters and an
event browser (docs/console.md)."""

from __future__ import annotations

from ordersys.shop.gateway.console import operate, views
from ordersys.shop.gateway.console.pages import router
from ordersys.shop.gateway.console.requests import OrderRequests

__all__ = ["OrderRequests", "operate", "router", "views"]
