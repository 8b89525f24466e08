"""The pages that act: sagas (fire a deadline now, retry compensations),
projections (rebuild, pause, resume) and dead letters (replay, purge). Every
action checks the session's CSRF token, then sends the browser back to the
page, which shows the outcome."""

from __future__ import annotations

import logging
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import Depends, Form, Request, Response

from ordersys.errors import BusinessRuleViolation, InvalidInput, NotFound
from ordersys.messaging.dlq import DeadLetters
from ordersys.shop.gateway.console.journey import saga_timeline
from ordersys.shop.gateway.console.pages import back, gw_of, render, router, uuid_of
from ordersys.shop.gateway.console.probes import (
    BACKENDS,
    ask,
    ask_each,
    count_queues,
    letter_queues,
)
from ordersys.shop.gateway.console.session import (
    PATH,
    Session,
    checked_action,
    session_of,
)
from ordersys.shop.gateway.context import Gateway

logger = logging.getLogger("ordersys.shop.gateway.console")

SAGA_STATES = ("running", "completed", "failed", "overdue")
PROJECTION_ACTIONS = ("rebuild", "pause", "resume")
LETTERS_SHOWN = 20
BODY_SHOWN = 4000


def _replies(replies: dict[str, Any]) -> list[Any]:
    """The answers of the services that answered, flattened."""
    return [x for reply in replies.values() if isinstance(reply, list) for x in reply]


# -- sagas ---------------------------------------------------------------------


@router.get("/sagas")
async def sagas_page(
    request: Request,
    state: str = "",
    min_age: float = 0.0,
    session: Session = Depends(session_of),  # noqa: B008
) -> Response:
    if state and state not in SAGA_STATES:
        raise InvalidInput(f"state is one of {', '.join(SAGA_STATES)}", field="state")
    body: dict[str, Any] = {"min_age_seconds": max(min_age, 0.0)}
    if state:
        body["state"] = state
    replies = await ask_each(gw_of(request), list(BACKENDS), "ops.sagas", **body)
    sagas = sorted(
        _replies(replies), key=lambda s: s.get("started") or "", reverse=True
    )
    return render(
        request,
        "sagas.html",
        session,
        sagas=sagas,
        state=state,
        min_age=min_age,
        states=SAGA_STATES,
    )


async def _saga(gw: Gateway, saga_id: str) -> dict[str, Any]:
    wanted = str(uuid_of(saga_id, "saga_id"))
    replies = await ask_each(gw, list(BACKENDS), "ops.sagas", saga_id=wanted)
    for reply in _replies(replies):
        return dict(reply)
    raise NotFound(f"there is no saga {wanted}", saga_id=wanted)


@router.get("/sagas/{saga_id}")
async def saga_page(
    request: Request,
    saga_id: str,
    done: str = "",
    session: Session = Depends(session_of),  # noqa: B008
) -> Response:
    gw = gw_of(request)
    saga = await _saga(gw, saga_id)
    events = await ask(gw, saga["service"], "ops.events", aggregate_ids=[saga_id])
    timeline = saga_timeline(saga["service"], events)
    return render(
        request, "saga.html", session, saga=saga, timeline=timeline, done=done
    )


@router.post("/sagas/{saga_id}/fire")
async def fire(
    request: Request,
    saga_id: str,
    name: str = Form(...),
    _: Session = Depends(checked_action),  # noqa: B008
) -> Response:
    gw = gw_of(request)
    saga = await _saga(gw, saga_id)
    await ask(gw, saga["service"], "ops.fireDeadline", saga_id=saga_id, name=name)
    return back(f"{PATH}/sagas/{saga_id}?done=" + quote(f"deadline {name} fired"))


@router.post("/sagas/{saga_id}/retry")
async def retry(
    request: Request,
    saga_id: str,
    _: Session = Depends(checked_action),  # noqa: B008
) -> Response:
    gw = gw_of(request)
    saga = await _saga(gw, saga_id)
    reply = await ask(gw, saga["service"], "ops.retryCompensation", saga_id=saga_id)
    done = f"{reply['retried']} compensation(s) sent again"
    return back(f"{PATH}/sagas/{saga_id}?done=" + quote(done))


# -- projections -----------------------------------------------------------------


@router.get("/projections")
async def projections_page(
    request: Request,
    session: Session = Depends(session_of),  # noqa: B008
) -> Response:
    replies = await ask_each(gw_of(request), list(BACKENDS), "ops.status")
    projections = [
        {"service": name, **p}
        for name, reply in replies.items()
        if isinstance(reply, dict)
        for p in reply["projections"]
    ]
    silent = [name for name, reply in replies.items() if not isinstance(reply, dict)]
    return render(
        request,
        "projections.html",
        session,
        projections=projections,
        silent=silent,
        actions=PROJECTION_ACTIONS,
    )


@router.post("/projections/{service}/{projection}/{action}")
async def projection_action(
    request: Request,
    service: str,
    projection: str,
    action: str,
    _: Session = Depends(checked_action),  # noqa: B008
) -> Response:
    if service not in BACKENDS:
        raise NotFound(f"there is no service {service}", service=service)
    if action not in PROJECTION_ACTIONS:
        raise NotFound(f"there is no projection action {action}", action=action)
    await ask(
        gw_of(request), service, "ops.projection", projection=projection, action=action
    )
    logger.warning("console: %s %s of %s", action, projection, service)
    return back(f"{PATH}/projections")


# -- dead letters ----------------------------------------------------------------


def _letters(gw: Gateway, queue: str) -> DeadLetters:
    if queue not in letter_queues(gw):
        raise NotFound(f"there is no queue {queue}", queue=queue)
    return DeadLetters(gw.settings.rabbitmq_url, queue)


def _shown(letter: Any) -> dict[str, Any]:
    return {
        "message_id": letter.message_id,
        "message_type": letter.message_type,
        "reason": letter.reason,
        "headers": letter.headers,
        "body": letter.body[:BODY_SHOWN].decode(errors="replace"),
    }


@router.get("/dead-letters")
async def dead_letters_page(
    request: Request,
    queue: str = "",
    replayed: str = "",
    session: Session = Depends(session_of),  # noqa: B008
) -> Response:
    gw = gw_of(request)
    queues = await gw.backend.run(letter_queues, gw)
    counts = await gw.backend.run(count_queues, gw, [f"{q}.dlq" for q in queues])
    listed = [
        {"queue": q, "count": c.messages}
        for q in queues
        if (c := counts.get(f"{q}.dlq")) is not None
    ]
    letters = []
    if queue:
        peeked = await gw.backend.run(lambda: _letters(gw, queue).peek(LETTERS_SHOWN))
        letters = [_shown(letter) for letter in peeked]
    handled = await _handled(gw, [m for m in replayed.split(",") if m])
    return render(
        request,
        "dead_letters.html",
        session,
        queues=listed,
        queue=queue,
        letters=letters,
        replayed=handled,
    )


async def _handled(gw: Gateway, message_ids: list[str]) -> dict[str, list[str]]:
    """Who handled each of ``message_ids`` (and when), as the consumers'
    dedupe records say."""
    if not message_ids:
        return {}
    replies = await ask_each(
        gw, list(BACKENDS), "ops.progress", message_ids=message_ids
    )
    found: dict[str, list[str]] = {m: [] for m in message_ids}
    for reply in replies.values():
        if not isinstance(reply, dict):
            continue
        for consumer, handled in reply["handled"].items():
            for message_id, at in handled.items():
                found.setdefault(message_id, []).append(f"{consumer} at {at}")
    return found


@router.post("/dead-letters/replay")
async def replay(
    request: Request,
    queue: str = Form(...),
    message_id: str = Form(""),
    _: Session = Depends(checked_action),  # noqa: B008
) -> Response:
    gw = gw_of(request)

    def run() -> list[str]:
        letters = _letters(gw, queue)
        ids = [m.message_id for m in letters.peek(LETTERS_SHOWN)]
        letters.replay(message_id or None)
        return [message_id] if message_id else ids

    replayed = await gw.backend.run(run)
    logger.warning("console: replayed %s from %s", replayed, queue)
    query = urlencode({"queue": queue, "replayed": ",".join(replayed)})
    return back(f"{PATH}/dead-letters?{query}")


@router.post("/dead-letters/purge")
async def purge(
    request: Request,
    queue: str = Form(...),
    confirm: str = Form(""),
    _: Session = Depends(checked_action),  # noqa: B008
) -> Response:
    if confirm != queue:
        raise BusinessRuleViolation(
            "to purge, confirm with the queue's name", queue=queue
        )
    gw = gw_of(request)
    purged = await gw.backend.run(lambda: _letters(gw, queue).purge())
    logger.warning("console: purged %s dead letters of %s", purged, queue)
    return back(f"{PATH}/dead-letters?" + urlencode({"queue": queue}))
