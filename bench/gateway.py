"""The API gateway's speed over HTTP, beside a bare FastAPI endpoint, in one run.

    python -m bench gateway [--seconds S] [--connections C]

Starts the bundled system as ``ordersys up`` does (every service in a process
of its own, the gateway last, on a schema and RabbitMQ prefix of their own),
and a bare FastAPI app on uvicorn with the same server options. Then measures,
with ``wrk`` (Debian package ``wrk``; an asyncio/httpx load generator when it is
missing, which measures less and says so):

* ``GET /bare``: the baseline, a FastAPI endpoint returning a constant order
  document of the same size, no middleware;
* ``GET /orders/{id}``: one order through the gateway, cached (the order's
  read-model document is in Redis): JWT check, rate limit, authorization;
* ``POST /orders``: placing an order of one item: JWT, rate limit, the price
  from the catalog's read model, the command to the orders service over
  RabbitMQ, its event store.

The baseline and the cached GET alternate over three rounds (medians are
compared); the POST runs once. Prints requests/s with p50/p99 latency for each,
and the cached GET as a share of the bare endpoint's rate (target: at least 60%).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import redis
from fastapi import FastAPI
from psycopg import sql

from ordersys import launcher
from ordersys.persistence.database import connect, ensure_database
from ordersys.settings import load_settings
from ordersys.shop.services import SERVICES
from ordersys.transport import Envelope
from ordersys.transport.rabbitmq import KombuTransport

ROUNDS = 3
SECRET = "the benchmark's key of the gateway tokens, 32+ characters"
PASSWORD = "correct horse battery"
ORDER = {
    "order_id": "0b6f4f3e-2a5d-4c1e-9a53-8d2a7c1f0e11",
    "customer_id": "7d3e2b1a-9c8f-5e4d-a3b2-c1d0e9f8a7b6",
    "status": "CONFIRMED",
    "reason": "",
    "lines": [
        {
            "product_id": "5c9d1e7a-3f1b-4b2e-8c4d-2e6f7a8b9c0d",
            "quantity": 2,
            "unit_price_cents": 1299,
        }
    ],
    "total_cents": 2598,
    "version": 3,
    "placed_at": "2026-11-26T10:00:00.000000+00:00",
    "updated_at": "2026-11-26T10:00:01.000000+00:00",
}

bare = FastAPI()


@bare.get("/bare")
async def bare_order() -> dict[str, Any]:
    return ORDER


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def serve_bare(port: int) -> subprocess.Popen[bytes]:
    """The baseline on uvicorn, with the options the gateway runs with."""
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.gateway:bare",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=Path(__file__).resolve().parent.parent,
    )
    wait_until_up(f"http://127.0.0.1:{port}/bare")
    return process


def wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            msg = f"{url} did not come up"
            raise RuntimeError(msg)
        time.sleep(0.1)


_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNITS[unit]


def wrk(
    url: str, seconds: int, connections: int, script: str | None = None
) -> dict[str, float]:
    """Requests/s, p50 and p99 (ms) by wrk; non-2xx answers are an error."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency"]
    if script:
        command += ["-s", script]
    out = subprocess.run(
        [*command, url], capture_output=True, text=True, check=True
    ).stdout
    failed = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = _ms(re.search(r"\s50%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    p99 = _ms(re.search(r"\s99%\s+(\S+)", out).group(1))  # type: ignore[union-attr]
    errors = float(failed.group(1)) if failed else 0.0
    return {"rate": rate, "p50": p50, "p99": p99, "errors": errors}


def wrk_script(method: str, headers: dict[str, str], body: str = "") -> str:
    lines = [f'wrk.method = "{method}"']
    lines += [f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()]
    if body:
        lines.append(f"wrk.body = [[{body}]]")
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write("\n".join(lines) + "\n")
        return f.name


async def _httpx_load(
    url: str,
    seconds: int,
    connections: int,
    method: str,
    headers: dict[str, str],
    body: str,
) -> dict[str, float]:
    latencies: list[float] = []
    errors: list[int] = []
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=connections)
    async with httpx.AsyncClient(limits=limits, headers=headers) as client:

        async def worker() -> None:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                reply = await client.request(method, url, content=body or None)
                if reply.status_code >= 300:
                    errors.append(reply.status_code)
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return {
        "rate": len(latencies) / elapsed,
        "p50": latencies[len(latencies) // 2] * 1e3,
        "p99": latencies[int(len(latencies) * 0.99)] * 1e3,
        "errors": float(len(errors)),
    }


def load(
    url: str,
    seconds: int,
    connections: int,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    body: str = "",
) -> dict[str, float]:
    headers = headers or {}
    if shutil.which("wrk"):
        script = wrk_script(method, headers, body) if headers or body else None
        try:
            return wrk(url, seconds, connections, script)
        finally:
            if script:
                os.unlink(script)
    return asyncio.run(_httpx_load(url, seconds, connections, method, headers, body))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench gateway")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args(argv)

    prefix = f"bench-{uuid.uuid4().hex[:8]}"
    schema = f"bench_{uuid.uuid4().hex[:12]}"
    gateway_port, bare_port = free_port(), free_port()
    overrides = {
        "POSTGRES_DBNAME": "ordersys_bench",
        "POSTGRES_SCHEMA": schema,
        "MESSAGING_PREFIX": prefix,
        "CACHE_PREFIX": prefix,
        "GATEWAY_PORT": str(gateway_port),
        "JWT_SECRET": SECRET,
        "RATE_LIMIT_PER_MINUTE": "100000000",
        "LOG_LEVEL": "WARNING",
        # Idle read models look for new events less often: the services' polling
        # is background load on two cores, beside what is measured.
        "PROJECTION_POLL_INTERVAL": "0.1",
    }
    os.environ.update({f"ORDERSYS_{k}": v for k, v in overrides.items()})
    settings = load_settings()
    ensure_database(settings)
    generator = (
        "wrk"
        if shutil.which("wrk")
        else "httpx (wrk not installed: rates are lower bounds)"
    )
    print(
        f"gateway benchmark: {args.seconds}s per endpoint, {args.connections} "
        f"connections, load by {generator}"
    )
    children = launcher.start(SERVICES)
    baseline = serve_bare(bare_port)
    transport = KombuTransport(settings.rabbitmq_url, prefix=prefix)
    try:
        base = f"http://127.0.0.1:{gateway_port}"
        wait_until_up(f"{base}/health/live")
        results = measure(base, bare_port, transport, args.seconds, args.connections)
    finally:
        transport.close()
        baseline.terminate()
        baseline.wait(10)
        launcher.stop(children)
        forget(settings.redis_url, prefix)
        with connect(settings, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(schema)
                )
            )
    report(results)
    return 0


def forget(redis_url: str, prefix: str) -> None:
    """Delete the benchmark's Redis keys (read models, rate limits, owners)."""
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.close()


def measure(
    base: str, bare_port: int, transport: KombuTransport, seconds: int, connections: int
) -> dict[str, dict[str, float]]:
    email = f"bench-{uuid.uuid4().hex[:8]}@example.com"
    admin_email = f"admin-{email}"
    transport.call(
        "users",
        Envelope.new(
            "user.create",
            {
                "email": admin_email,
                "name": "Admin",
                "password": PASSWORD,
                "role": "admin",
            },
        ),
        timeout=10,
    )
    with httpx.Client(base_url=base, timeout=30) as client:
        client.post(
            "/auth/register",
            json={"email": email, "name": "Bench", "password": PASSWORD},
        ).raise_for_status()
        token = client.post(
            "/auth/login", json={"email": email, "password": PASSWORD}
        ).json()["access_token"]
        admin = client.post(
            "/auth/login", json={"email": admin_email, "password": PASSWORD}
        ).json()["access_token"]
        product = client.post(
            "/admin/products",
            headers={"Authorization": f"Bearer {admin}"},
            json={
                "sku": "BENCH-1",
                "name": "A benchmark",
                "price_cents": 1299,
                "stock": 1_000_000,
            },
        ).json()["product_id"]
        auth = {"Authorization": f"Bearer {token}"}
        while client.get(f"/products/{product}").status_code == 404:
            time.sleep(0.05)
        body = f'{{"items": [{{"product_id": "{product}", "quantity": 1}}]}}'
        placed = client.post(
            "/orders",
            headers={**auth, "Content-Type": "application/json"},
            content=body,
        ).json()
        order = client.get(
            f"/orders/{placed['id']}",
            headers=auth,
            params={"after_position": placed["position"]},
        )
        order.raise_for_status()
    # The machine's other work drifts: alternate the baseline and the cached
    # GET over rounds and compare medians.
    rounds: dict[str, list[dict[str, float]]] = {"bare": [], "get": []}
    for _ in range(ROUNDS):
        rounds["bare"].append(
            load(f"http://127.0.0.1:{bare_port}/bare", seconds, connections)
        )
        rounds["get"].append(
            load(f"{base}/orders/{placed['id']}", seconds, connections, headers=auth)
        )
    results = {name: median(runs) for name, runs in rounds.items()}
    for name, runs in rounds.items():
        rates = ", ".join(f"{run['rate']:.0f}" for run in runs)
        print(f"  {name} rounds, req/s: {rates}")
    results["post"] = load(
        f"{base}/orders",
        seconds,
        connections,
        method="POST",
        headers={**auth, "Content-Type": "application/json"},
        body=body,
    )
    return results


def median(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run of median rate (its latencies with it)."""
    return sorted(runs, key=lambda run: run["rate"])[len(runs) // 2]


def report(results: dict[str, dict[str, float]]) -> None:
    names = {
        "bare": "bare FastAPI endpoint (baseline)",
        "get": "GET /orders/{id} (cached)",
        "post": "POST /orders (one item)",
    }
    print(f"{'endpoint':<36} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'of bare':>8}")
    bare_rate = results["bare"]["rate"]
    for key, name in names.items():
        r = results[key]
        share = r["rate"] / bare_rate
        figures = f"{r['rate']:>9.0f} {r['p50']:>8.2f} {r['p99']:>8.2f}"
        failed = f"  ({r['errors']:.0f} not 2xx)" if r.get("errors") else ""
        print(f"{name:<36} {figures} {share:>8.0%}{failed}")
    share = results["get"]["rate"] / bare_rate
    verdict = "met" if share >= 0.6 else "missed"
    print(f"cached GET at {share:.0%} of the bare endpoint: target 60% {verdict}")
