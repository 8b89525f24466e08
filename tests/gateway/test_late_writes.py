"""A write carried out after its caller gave up: the orders service's append
waits on PostgreSQL (the test holds a lock on its events table) longer than
a gateway waits for the reply, so the client gets 504; then the lock goes,
the order is placed all the same, and the client retries with the same
Idempotency-Key. The retry answers what that first attempt produced, position
included, so the client reads its own write.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
from psycopg import sql

from ordersys.persistence.database import connect
from tests.gateway.conftest import System, User

RPC_SECONDS = 2.0
PATIENCE = 60.0
"""How long the test waits for the late write to show."""


def my_orders(user: User) -> dict[str, Any]:
    reply = user.client.get("/orders", headers=user.headers())
    assert reply.status_code == 200, reply.text
    return dict(reply.json())


def test_a_retry_of_a_write_done_after_a_timeout_answers_its_position(
    system: System, gateway_with: Any, ann: User
) -> None:
    impatient: httpx.Client = gateway_with(rpc_timeout=RPC_SECONDS)
    key = {**ann.headers(), "Idempotency-Key": uuid.uuid4().hex}
    body = {"items": [], "submit": False}
    events = sql.Identifier(system.settings.postgres_schema, "orders_events")

    # Given a first attempt whose append waits on PostgreSQL past the timeout
    with connect(system.settings) as conn:
        conn.execute(sql.SQL("LOCK TABLE {} IN EXCLUSIVE MODE").format(events))
        first = impatient.post("/orders", headers=key, json=body)
    # and is carried out once the lock goes, although its caller gave up
    deadline = time.monotonic() + PATIENCE
    while not (listed := my_orders(ann))["orders"]:
        assert time.monotonic() < deadline, "the first attempt was not carried out"
        time.sleep(0.1)

    # When the client retries it
    retry = ann.client.post("/orders", headers=key, json=body)

    # Then it gets the first attempt's order, and a position to read it with
    assert first.status_code == 504, first.text
    assert retry.status_code == 201, retry.text
    written = retry.json()
    assert written["id"] == listed["orders"][0]["order_id"]
    assert written["version"] == 1
    assert isinstance(written["position"], int)
    read = ann.client.get(
        f"/orders/{written['id']}",
        headers=ann.headers(),
        params={"after_position": written["position"]},
    )
    assert read.status_code == 200, read.text
    assert read.json()["order_id"] == written["id"]
    assert my_orders(ann)["total"] == 1
