"""An order's journey: everything that happened for one order, in every
service, on one timeline.

What belongs to an order is found from what the shop stores, by id: the
order's events and its saga's (orders), its payment's (payments, by the
payment id derived from the order's), its products' stock events for this
order (catalog); the gateway's HTTP requests for it (recorded by
:mod:`~ordersys.shop.gateway.console.requests`); when the relay published each
order event, when the read model applied it, and when each consumer
(notifications, analytics) handled it (``ops.progress``). Entries are in the
order they happened: each step is timed by the process that took it, and the
services of one deployment share a clock closely enough for causes to come
before their effects.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any
from uuid import UUID

from ordersys.errors import NotFound, OrdersysError
from ordersys.processes import saga_id
from ordersys.shop.catalog.domain import inventory_id
from ordersys.shop.gateway.console.probes import BACKENDS, ask, ask_each
from ordersys.shop.gateway.console.requests import requests_for
from ordersys.shop.gateway.context import Gateway
from ordersys.shop.orders.saga import OrderSaga
from ordersys.shop.payments.domain import payment_id
from ordersys.shop.routes import service_for

ORIGIN = "orders"
"""The service whose events the relay publishes as ``orders:<position>``."""


async def journey(gw: Gateway, order_id: UUID) -> dict[str, Any]:
    """The order (its read model) and its timeline; :class:`NotFound` if the
    orders service knows no such order."""
    the_saga = saga_id(OrderSaga, order_id)
    # Two rounds of requests, each to several services at once: what the
    # order's id finds, then what its products and positions find.
    order, orders, payments, requests = await asyncio.gather(
        ask(gw, "orders", "order.get", order_id=str(order_id)),
        _events(gw, "orders", [order_id, the_saga]),
        _events(gw, "payments", [payment_id(order_id)]),
        requests_for(gw, order_id),
    )
    own = [e for e in orders if e["aggregate_id"] == str(order_id)]
    positions = [e["position"] for e in own]
    store = own[0]["application"] if own else ""
    catalog, progress = await asyncio.gather(
        _events(
            gw,
            "catalog",
            [inventory_id(UUID(p)) for p in order["lines"]],
            where={"order_id": str(order_id)},
        ),
        ask_each(
            gw,
            list(BACKENDS),
            "ops.progress",
            positions={store: positions},
            message_ids=[f"{ORIGIN}:{p}" for p in positions],
        ),
    )
    names = {e["position"]: _short(e["event"]) for e in own}
    commands = _commands(orders)
    entries = [
        *requests,
        *_entries("orders", orders, commands),
        *_entries("catalog", catalog, commands),
        *_entries("payments", payments, commands),
        *_progress_entries(progress, names),
    ]
    return {"order": order, "saga_id": str(the_saga), "timeline": timed(entries)}


async def _events(
    gw: Gateway, service: str, ids: list[UUID], where: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    if not ids:
        return []
    try:
        found: list[dict[str, Any]] = await ask(
            gw,
            service,
            "ops.events",
            aggregate_ids=[str(i) for i in ids],
            where=where or {},
        )
    except OrdersysError:
        return []  # a service that does not answer leaves a gap, shown as such
    return found


def _changes(event: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """What a stored saga event says, change by change: a saga records each
    step as one event listing its changes (a ``Started`` with its first
    step, a ``Stepped``); an older or another event is one change."""
    name, payload = _short(event["event"]), event["payload"]
    changes = payload.get("changes")
    if name not in ("Started", "Stepped") or not isinstance(changes, list):
        return [(name, payload)]
    shown = [(name, {"key": payload.get("key")})] if name == "Started" else []
    return shown + [(c["event"], c["fields"]) for c in changes]


def _commands(events: list[dict[str, Any]]) -> dict[str, str]:
    """The message type of each command a saga issued, by command id."""
    return {
        fields["command_id"]: fields["message_type"]
        for e in events
        for _, fields in _changes(e)
        if "command_id" in fields and "message_type" in fields
    }


def saga_timeline(service: str, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A saga's events as the steps of a timeline, a step for each change."""
    return timed(_entries(service, events, _commands(events)))


def _entries(
    service: str, events: list[dict[str, Any]], commands: dict[str, str]
) -> list[dict[str, Any]]:
    return [
        _event_entry(service, e, commands, name, payload)
        for e in events
        for name, payload in _changes(e)
    ]


def _short(event: str) -> str:
    return event.rsplit(".", 1)[-1]


def _event_entry(
    service: str,
    event: dict[str, Any],
    commands: dict[str, str],
    name: str,
    payload: dict[str, Any],
) -> dict[str, Any]:
    """One change a stored event records as a step: a saga's say what it did
    (a command sent, a reply, a deadline), the others that an event was
    appended."""
    entry = {
        "at": event["timestamp"],
        "service": service,
        "kind": "event",
        "title": f"{name} appended to {event['application']} "
        f"(version {event['version']}, position {event['position']})",
        "detail": payload,
        "trace": event.get("trace") or {},
    }
    saga_step = _saga_step(name, payload, commands)
    if saga_step is not None:
        entry.update(saga_step)
    return entry


def _saga_step(
    name: str, payload: dict[str, Any], commands: dict[str, str]
) -> dict[str, Any] | None:
    if name == "CommandIssued":
        target = service_for(payload["message_type"])
        return {
            "kind": "command",
            "title": f"saga sends {payload['message_type']} to {target}",
        }
    if name == "ReplyReceived":
        error = payload.get("error")
        outcome = f"refused: {error.get('message', error)}" if error else "ok"
        command = commands.get(payload["command_id"], "a command")
        return {
            "kind": "reply",
            "title": f"saga records the reply from {service_for(command)} "
            f"to {command}: {outcome}",
        }
    if name == "DeadlineSet":
        return {
            "kind": "deadline",
            "title": f"saga sets deadline {payload['name']!r} due {payload['due']}",
        }
    if name in ("DeadlineCancelled", "DeadlineFired"):
        verb = "cancelled" if name == "DeadlineCancelled" else "FIRED"
        return {"kind": "deadline", "title": f"deadline {payload['name']!r} {verb}"}
    if name == "StepReached":
        return {"kind": "saga", "title": f"saga step: {payload['step']}"}
    if name == "Finished":
        why = f": {payload['reason']}" if payload.get("reason") else ""
        return {"kind": "saga", "title": f"saga {payload['status']}{why}"}
    if name in ("Started", "Begun"):
        return {"kind": "saga", "title": f"saga {name.lower()}"}
    return None


def _progress_entries(
    progress: dict[str, Any], names: dict[int, str]
) -> list[dict[str, Any]]:
    """The relay's publishes, the read model's catching up and the
    consumers' handling, for each order event."""
    entries = []
    for service, answer in progress.items():
        if not isinstance(answer, dict):
            continue
        for relay, times in answer["published"].items():
            entries += _reached(
                service,
                "publish",
                times,
                names,
                f"{relay} published {{}} as {ORIGIN}:{{}}",
            )
        for projection, times in answer["applied"].items():
            entries += _reached(
                service,
                "read model",
                times,
                names,
                f"read model {projection} applied {{}} (position {{}})",
            )
        for consumer, handled in answer["handled"].items():
            for message_id, at in handled.items():
                position = int(message_id.rsplit(":", 1)[-1])
                entries.append(
                    {
                        "at": at,
                        "service": service,
                        "kind": "handled",
                        "title": f"{consumer} handled {names.get(position, '?')} "
                        f"({message_id})",
                        "detail": {},
                        "trace": {},
                    }
                )
    return entries


def _reached(
    service: str, kind: str, times: dict[str, Any], names: dict[int, str], title: str
) -> list[dict[str, Any]]:
    entries = []
    for position_text, at in times.items():
        position = int(position_text)
        if at is None or position not in names:
            continue
        entries.append(
            {
                "at": None if at == "yes" else at,
                "service": service,
                "kind": kind,
                "title": title.format(names[position], position),
                "detail": {}
                if at != "yes"
                else {"note": "time not recorded (restart)"},
                "trace": {},
            }
        )
    return entries


def timed(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries in time order, each with the milliseconds since the one
    before; entries whose time is not known come last."""
    known = sorted(
        (e for e in entries if e["at"]), key=lambda e: datetime.fromisoformat(e["at"])
    )
    previous: datetime | None = None
    for entry in known:
        at = datetime.fromisoformat(entry["at"])
        entry["after_ms"] = (
            None if previous is None else (at - previous).total_seconds() * 1000
        )
        previous = at
    return [*known, *(dict(e, after_ms=None) for e in entries if not e["at"])]


async def orders_of(gw: Gateway, customer_id: UUID) -> list[dict[str, Any]]:
    """A customer's latest orders (for the search)."""
    try:
        page = await ask(
            gw, "orders", "orders.getAll", customer_id=str(customer_id), limit=50
        )
    except NotFound:
        return []
    found: list[dict[str, Any]] = page["orders"]
    return found
