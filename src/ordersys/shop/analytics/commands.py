"""The analytics service's query."""

from __future__ import annotations

from pydantic import Field

from ordersys import Query


class GetAnalytics(Query):
    """Revenue per day, orders by status, top products, conversion and
    saga duration, over every order the service has seen."""

    message_type = "analytics.get"
    top: int = Field(10, ge=1, le=100, description="How many top products.")
    days: int = Field(30, ge=1, le=366, description="How many recent days of revenue.")
