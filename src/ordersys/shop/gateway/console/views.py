"""The pages that only look: the overview, an order's journey, the event
browser."""

from __future__ import annotations

from typing import Any

from fastapi import Depends, Request, Response

from ordersys.errors import NotFound
from ordersys.shop.gateway.console.journey import journey, orders_of
from ordersys.shop.gateway.console.overview import Rates, overview
from ordersys.shop.gateway.console.pages import back, gw_of, render, router, uuid_of
from ordersys.shop.gateway.console.probes import BACKENDS, ask, ask_each
from ordersys.shop.gateway.console.session import PATH, Session, session_of

_rates = Rates()


@router.get("/overview")
async def overview_page(
    request: Request,
    session: Session = Depends(session_of),  # noqa: B008
) -> Response:
    snapshot = await overview(
        gw_of(request), _rates, getattr(request.app.state, "registry", None)
    )
    return render(request, "overview.html", session, **snapshot)


@router.get("/orders")
async def search(
    request: Request,
    q: str = "",
    session: Session = Depends(session_of),  # noqa: B008
) -> Response:
    """An order by its id, or a customer's orders by the customer's id."""
    found: list[dict[str, Any]] = []
    if q.strip():
        wanted = uuid_of(q, "q")
        try:
            await ask(gw_of(request), "orders", "order.get", order_id=str(wanted))
        except NotFound:
            found = await orders_of(gw_of(request), wanted)
        else:
            return back(f"{PATH}/orders/{wanted}")
    return render(request, "search.html", session, q=q, orders=found, searched=bool(q))


@router.get("/orders/{order_id}")
async def journey_page(
    request: Request,
    order_id: str,
    session: Session = Depends(session_of),  # noqa: B008
) -> Response:
    found = await journey(gw_of(request), uuid_of(order_id, "order_id"))
    services = sorted({e["service"] for e in found["timeline"]})
    return render(request, "journey.html", session, services=services, **found)


@router.get("/events")
async def events_page(
    request: Request,
    aggregate_id: str = "",
    session: Session = Depends(session_of),  # noqa: B008
) -> Response:
    """An aggregate's events, from whichever service stores it."""
    events: list[dict[str, Any]] = []
    if aggregate_id.strip():
        wanted = str(uuid_of(aggregate_id, "aggregate_id"))
        replies = await ask_each(
            gw_of(request), list(BACKENDS), "ops.events", aggregate_ids=[wanted]
        )
        for service, reply in replies.items():
            if isinstance(reply, list):
                events += [{"service": service, **e} for e in reply]
        events.sort(key=lambda e: (e["timestamp"], e["version"]))
    return render(
        request, "events.html", session, aggregate_id=aggregate_id, events=events
    )
