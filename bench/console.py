"""The operator console's speed with many orders in the system.

    python -m bench console [--orders N] [--requests R]

Writes ``N`` (default 10,000) confirmed orders straight into the services'
event stores through the framework (each order's events, its saga's with
every command and reply, its stock reservation and its payment), marks the
saga runner and the relay as past them (they are history, not work), then
starts the bundled system as ``ordersys up`` does, waits until the read
models have caught up, logs in to the console as an admin, and times
``R`` requests (default 50) of the overview and of random orders' journeys.
Prints p50, p95 and the worst time of each beside the target (300 ms).
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import time
import uuid
from typing import Any
from uuid import UUID

import httpx
from eventsourcing.persistence import Tracking
from psycopg import sql

from bench.gateway import SECRET, forget, free_port, wait_until_up
from ordersys import launcher
from ordersys.messaging.relay import checkpoint_for
from ordersys.persistence.database import connect, ensure_database
from ordersys.settings import Settings, load_settings
from ordersys.shop.catalog.domain import Inventory, Product
from ordersys.shop.catalog.service import Catalog
from ordersys.shop.orders.domain import Order
from ordersys.shop.orders.saga import OrderProcess, OrderSaga
from ordersys.shop.orders.service import Orders
from ordersys.shop.payments.domain import Payment
from ordersys.shop.payments.service import Payments
from ordersys.shop.services import SERVICES
from ordersys.transport import Envelope
from ordersys.transport.rabbitmq import KombuTransport

TARGET_MS = 300.0
PRODUCTS = 100
BATCH = 250
ADMIN = ("bench-admin@example.com", "the benchmark admin's password")


def write_orders(settings: Settings, count: int) -> list[UUID]:
    """``count`` confirmed orders, written as the running system would have
    written them; returns their ids."""
    catalog, orders, process, payments = (
        Catalog(settings),
        Orders(settings),
        OrderProcess(settings),
        Payments(settings),
    )
    products, stocks = [], []
    for n in range(PRODUCTS):
        product = Product.create(f"BENCH-{n}", f"product {n}", 1000)
        stock = Inventory(product_id=product.id)
        stock.add_stock(count)
        products.append(product)
        stocks.append(stock)
    catalog.write(*products, *stocks)
    customer = uuid.uuid4()
    ids = []
    for start in range(0, count, BATCH):
        written: dict[str, list[Any]] = {"orders": [], "sagas": [], "payments": []}
        for n in range(start, min(start + BATCH, count)):
            pick = n % PRODUCTS
            written_order = _order(customer, products[pick].id, stocks[pick])
            for key, aggregate in zip(written, written_order, strict=True):
                written[key].append(aggregate)
        orders.write(*written["orders"])
        process.write(*written["sagas"])
        payments.write(*written["payments"])
        catalog.write(*stocks)
        ids += [o.id for o in written["orders"]]
        print(f"  {len(ids)} orders written", end="\r", flush=True)
    _mark_done(orders, process)
    for app in (catalog, orders, process, payments):
        app.close()
    print()
    return ids


def _order(
    customer: UUID, product_id: UUID, stock: Inventory
) -> tuple[Order, OrderSaga, Payment]:
    lines = [{"product_id": str(product_id), "quantity": 1, "unit_price_cents": 1000}]
    order = Order.place(customer, lines)
    order.submit()
    saga = OrderSaga(key=str(order.id))
    saga.begin(order.id, lines, order.total_cents, 30.0)
    saga.start()
    stock.reserve(order.id, 1)
    _reply(saga)  # reserved: the saga asks for the payment
    payment = Payment.request(order.id, order.total_cents)
    payment.capture(f"bench-{order.id}")
    _reply(saga)  # captured: the saga confirms the order and commits the stock
    order.confirm()
    stock.commit(order.id)
    _reply(saga)
    _reply(saga)
    return order, saga, payment


def _reply(saga: OrderSaga) -> None:
    command_id = next(iter(saga.awaiting))
    saga.receive_reply(UUID(command_id), None, None)


def _mark_done(orders: Orders, process: OrderProcess) -> None:
    """The saga runner and the relay start after what was written: these
    orders are history, their commands were sent and their events published."""
    process.recorder.insert_tracking(Tracking(orders.name, orders.head_position()))
    process.recorder.insert_tracking(Tracking(process.name, process.head_position()))
    relay = checkpoint_for(orders, "relay")
    relay.insert_tracking(Tracking("relay:orders", orders.head_position()))


def timed(client: httpx.Client, path: str) -> float:
    started = time.perf_counter()
    reply = client.get(path)
    elapsed = (time.perf_counter() - started) * 1000
    assert reply.status_code == 200, (path, reply.status_code, reply.text[:500])
    return elapsed


def round_trip(transport: KombuTransport) -> float:
    started = time.perf_counter()
    transport.call("orders", Envelope.new("ops.status", {}), 15)
    return (time.perf_counter() - started) * 1000


def report(name: str, times: list[float], *, target: bool = True) -> None:
    times = sorted(times)
    p95 = times[max(int(len(times) * 0.95) - 1, 0)]
    verdict = "under" if p95 < TARGET_MS else "OVER"
    against = f"   ({verdict} the {TARGET_MS:.0f} ms target at p95)" if target else ""
    print(
        f"{name:<38} p50 {statistics.median(times):7.1f} ms   p95 {p95:7.1f} ms   "
        f"worst {times[-1]:7.1f} ms{against}"
    )


def caught_up(transport: KombuTransport, within: float = 900.0) -> None:
    """Wait until every projection has applied every event written."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        lags = [
            projection["lag"]
            for service in ("orders", "catalog")
            for projection in transport.call(
                service, Envelope.new("ops.status", {}), 15
            )["projections"]
        ]
        if not any(lags):
            return
        print(f"  read models {lags} events behind", end="\r", flush=True)
        time.sleep(2)
    msg = "the read models did not catch up in time"
    raise RuntimeError(msg)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench console")
    parser.add_argument("--orders", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=50)
    args = parser.parse_args(argv)

    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    port = free_port()
    overrides = {
        "POSTGRES_DBNAME": "ordersys_bench",
        "POSTGRES_SCHEMA": schema,
        "MESSAGING_PREFIX": prefix,
        "CACHE_PREFIX": prefix,
        "GATEWAY_PORT": str(port),
        "JWT_SECRET": SECRET,
        "RATE_LIMIT_PER_MINUTE": "100000000",
        "LOG_LEVEL": "WARNING",
        "PROJECTION_POLL_INTERVAL": "0.1",
    }
    os.environ.update({f"ORDERSYS_{k}": v for k, v in overrides.items()})
    settings = load_settings()
    ensure_database(settings)
    print(f"console benchmark: {args.orders} orders, {args.requests} requests each")
    started = time.monotonic()
    ids = write_orders(settings, args.orders)
    print(f"  written in {time.monotonic() - started:.0f}s; starting the system")
    children = launcher.start(SERVICES)
    transport = KombuTransport(settings.rabbitmq_url, prefix=prefix)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_up(f"{base}/health/live")
        transport.call(
            "users",
            Envelope.new(
                "user.create",
                {
                    "email": ADMIN[0],
                    "name": "Bench",
                    "password": ADMIN[1],
                    "role": "admin",
                },
            ),
            15,
        )
        with httpx.Client(base_url=base, timeout=30) as client:
            client.post(
                "/console/login", data={"email": ADMIN[0], "password": ADMIN[1]}
            )
            caught_up(transport)
            timed(client, "/console/overview")  # the first look has no rates yet
            pick = random.Random(16)
            overview = [
                timed(client, "/console/overview") for _ in range(args.requests)
            ]
            journey = [
                timed(client, f"/console/orders/{pick.choice(ids)}")
                for _ in range(args.requests)
            ]
            # Baselines from the same run: the gateway answering alone, and one
            # round trip to a service, as the machine's load allows them now.
            live = [timed(client, "/health/live") for _ in range(args.requests)]
            status = [round_trip(transport) for _ in range(args.requests)]
    finally:
        transport.close()
        launcher.stop(children)
        forget(settings.redis_url, prefix)
        with connect(settings, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(schema)
                )
            )
    report("overview", overview)
    report("order journey", journey)
    report("baseline: GET /health/live", live, target=False)
    report("baseline: one ops.status round trip", status, target=False)
    return 0
