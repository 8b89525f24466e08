"""The whole system under load: orders/s from HTTP to CONFIRMED, latencies,
projection lag and rebuild, beside baselines measured in the same run.

    python -m bench system [--seconds 20] [--clients 64] [--baseline-seconds 3]
                           [--rebuild-events 50000] [--pool-size 2]
                           [--json bench/results/system.json] [--profile DIR]

Starts every service as ``ordersys up`` does (``ordersys run <name>``, a
process each, the gateway last) on a PostgreSQL schema, RabbitMQ prefix and
Redis prefix of its own in the database ``ordersys_sysbench``; seeds products
with plenty of stock and registers customers through the gateway. Then:

1. **Baselines** (before the services start): prepared single-row
   ``INSERT`` commits/s from psycopg, 1 and 8 writers; raw kombu publishes/s
   (unconfirmed); RPC round trips/s of one caller to an echo server over the
   same RabbitMQ (one saga step is one such round trip); a bare FastAPI
   endpoint on uvicorn, loaded by the same httpx load generator as the gateway
   (its ceiling) and by ``wrk`` when it is installed. After phase 3 the bare
   endpoint is loaded once more at the half rate, open loop, as the baseline
   of the acknowledgement's latency.
2. **Sustained** (closed loop): ``--clients`` clients each ``POST /orders``
   (one item, ``submit: true``) and wait until the order is CONFIRMED in the
   read model before placing the next; orders/s is the count of orders that
   became visible as CONFIRMED in the last ``--seconds`` of the phase (after
   3 s of warm-up), divided by ``--seconds``.
3. **Half rate** (open loop): orders arrive at a constant half of the
   sustained rate for ``--seconds``; p50/p99 of the ``POST`` acknowledgement,
   of POST to CONFIRMED in the read model, and, for every fourth order, of
   POST to CONFIRMED seen by polling ``GET /orders/{id}?after_position=N``
   every 20 ms.
4. **Rebuild**: with the services stopped, the run's order events are copied
   under new order ids up to about ``--rebuild-events`` (default 50,000), then
   ``ProjectionRunner(OrderDetails, Orders(settings)).rebuild()`` runs over
   all of them, beside a raw keyset scan of the same rows.

Read-model lag is measured by a watcher thread that polls, every 10 ms, the
orders event table (new events, with their timestamps) and the read model's
tracking table (the last applied position): an event's lag is the first poll
that finds it applied minus the event's timestamp, so figures are upper bounds
by up to one poll. The orders service's ``ordersys_projection_lag`` (in events)
is sampled from its /metrics every 250 ms as well. CPU of every process (the
services, PostgreSQL backends of this run, RabbitMQ, Redis, the load
generator, and the machine as a whole) is read from /proc for each phase, and
PostgreSQL's statistics give the commits and rows written per order.
``--profile DIR`` records ``py-spy`` stacks (raw format, idle frames
included, per thread) of the orders, gateway, catalog and payments services
during the sustained phase, and the rebuild under cProfile: a profiled run is
slower, so take figures from a run without it. ``--pool-size`` (default 2) is
each service's ``ORDERSYS_POSTGRES_POOL_SIZE``: the server's connections are
shared with other work, and pools still grow under load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import json
import os
import pstats
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import redis
from fastapi import FastAPI
from kombu.connection import Connection
from kombu.entity import Exchange, Queue
from kombu.messaging import Producer
from psycopg import sql

from ordersys.persistence.database import connect, ensure_database
from ordersys.projections import ProjectionRunner
from ordersys.settings import Settings, load_settings
from ordersys.shop.orders.projections import OrderDetails
from ordersys.shop.orders.service import Orders
from ordersys.shop.services import SERVICES
from ordersys.transport import Envelope
from ordersys.transport.rabbitmq import KombuTransport

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "ordersys_sysbench"
URL = "amqp://guest:guest@127.0.0.1:5672//"
SECRET = "the system benchmark's gateway key, long enough for HS256"
PASSWORD = "system-benchmark-pw"
CUSTOMERS = 16
PRODUCTS = 8
STOCK = 100_000_000
WARMUP = 3.0
POLL = 0.01
GET_POLL = 0.02
PROFILED = ("orders", "gateway", "catalog", "payments")

bare = FastAPI()


@bare.post("/bare")
async def bare_written() -> dict[str, Any]:
    """What ``POST /orders`` answers, constant: the baseline of an acknowledgement."""
    return {"id": "0b6f4f3e-2a5d-4c1e-9a53-8d2a7c1f0e11", "version": 2, "position": 2}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def percentile(values: list[float], share: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(int(len(ordered) * share), len(ordered) - 1)]


def summary(values: list[float]) -> dict[str, float]:
    """p50 and p99 (in ms) of durations in seconds, and how many."""
    return {
        "count": len(values),
        "p50_ms": percentile(values, 0.5) * 1e3,
        "p99_ms": percentile(values, 0.99) * 1e3,
    }


# --- the services as processes (after tests/system/system.py) ---------------


class ServiceProcess:
    """One ``ordersys run <name>``, its output appended to a log file."""

    def __init__(self, name: str, env: Mapping[str, str], log: Path) -> None:
        self.name = name
        self.ready = threading.Event()
        self.log = log.open("a")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "ordersys.shop.cli", "run", name],
            cwd=ROOT,
            env=dict(env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.log.write(f"[{self.name}] {line}")
            self.log.flush()
            if line.startswith(f"{self.name} ready"):
                self.ready.set()

    def wait_ready(self, within: float = 90.0) -> None:
        deadline = time.monotonic() + within
        while not self.ready.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                msg = f"{self.name} did not start (exit code {self.process.poll()})"
                raise RuntimeError(msg)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


@dataclass
class Run:
    """Where this run lives: its settings, names and processes."""

    schema: str = field(default_factory=lambda: f"sysbench_{uuid.uuid4().hex[:8]}")
    prefix: str = field(default_factory=lambda: f"sysbench-{uuid.uuid4().hex[:8]}")
    gateway_port: int = field(default_factory=free_port)
    metrics_port: int = field(default_factory=free_port)
    log: Path = field(
        default_factory=lambda: (
            Path(tempfile.gettempdir()) / f"ordersys-sysbench-{os.getpid()}.log"
        )
    )
    processes: dict[str, ServiceProcess] = field(default_factory=dict)
    pool_size: int = 2

    def env(self) -> dict[str, str]:
        overrides = {
            "POSTGRES_DBNAME": DATABASE,
            "POSTGRES_SCHEMA": self.schema,
            "MESSAGING_PREFIX": self.prefix,
            "CACHE_PREFIX": self.prefix,
            "GATEWAY_PORT": str(self.gateway_port),
            "JWT_SECRET": SECRET,
            "JWT_ACCESS_SECONDS": "3600",
            "RATE_LIMIT_PER_MINUTE": "100000000",
            "LOG_LEVEL": "WARNING",
            # Fewer idle connections than the default 5 per pool: the server's
            # 100 are shared with other work; pools still grow under load.
            "POSTGRES_POOL_SIZE": str(self.pool_size),
        }
        return {**os.environ, **{f"ORDERSYS_{k}": v for k, v in overrides.items()}}

    def settings(self) -> Settings:
        return load_settings(
            {
                "postgres_dbname": DATABASE,
                "postgres_schema": self.schema,
                "messaging_prefix": self.prefix,
                "cache_prefix": self.prefix,
            }
        )

    def start(self) -> None:
        env = self.env()
        started = []
        for name in SERVICES:
            extra = {} if name == "gateway" else {"ORDERSYS_METRICS_PORT": "0"}
            if name == "orders":
                extra = {"ORDERSYS_METRICS_PORT": str(self.metrics_port)}
            process = ServiceProcess(name, {**env, **extra}, self.log)
            self.processes[name] = process
            started.append(process)
        for process in started:
            process.wait_ready()

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()
        self.processes.clear()

    def pids(self) -> dict[str, int]:
        return {name: p.process.pid for name, p in self.processes.items()}


def delete_topology(prefix: str) -> None:
    """Delete the queues and exchanges this run's services declared."""
    listed = subprocess.run(
        ["rabbitmqctl", "-q", "list_queues", "name"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    with Connection(URL) as connection:
        channel = connection.channel()
        for queue in listed:
            if queue.startswith(prefix):
                channel.queue_delete(queue)
        for exchange in ("commands", "events", "dead-letters", "bench"):
            channel.exchange_delete(f"{prefix}.{exchange}")


def forget_cache(redis_url: str, prefix: str) -> None:
    client = redis.Redis.from_url(redis_url)
    keys = list(client.scan_iter(f"{prefix}:*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.close()


# --- CPU of each process, from /proc -----------------------------------------

TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / TICK  # utime + stime


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of the machine, every core."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values[:8]) - idle) / TICK, sum(values[:8]) / TICK


class CpuMeter:
    """CPU used by groups of processes between ``start()`` and ``stop()``,
    as a share of one core (100% = one core busy)."""

    def __init__(self, services: Mapping[str, int]) -> None:
        self.services = dict(services)

    def groups(self) -> dict[str, list[int]]:
        groups: dict[str, list[int]] = {
            name: [pid] for name, pid in self.services.items()
        }
        groups.update(
            {
                "postgres (this run)": [],
                "postgres (other)": [],
                "rabbitmq": [],
                "redis": [],
            }
        )
        groups["load generator (bench)"] = [os.getpid()]
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            line = _cmdline(pid)
            if line.startswith("postgres") or "/postgres " in line:
                key = "postgres (this run)" if DATABASE in line else "postgres (other)"
                groups[key].append(pid)
            elif "beam.smp" in line and "rabbit" in line:
                groups["rabbitmq"].append(pid)
            elif line.startswith("redis-server"):
                groups["redis"].append(pid)
        return groups

    def start(self) -> None:
        self._began = time.monotonic()
        self._machine = _machine_busy()
        self._start = {
            pid: _cpu_seconds(pid) for g in self.groups().values() for pid in g
        }

    def stop(self) -> dict[str, float]:
        elapsed = time.monotonic() - self._began
        busy, total = _machine_busy()
        shares: dict[str, float] = {}
        for name, pids in self.groups().items():
            # A backend that appeared meanwhile started from nothing.
            used = sum(_cpu_seconds(pid) - self._start.get(pid, 0.0) for pid in pids)
            shares[name] = used / elapsed * 100
        shares["machine (2 cores = 200%)"] = (
            (busy - self._machine[0])
            / (total - self._machine[1])
            * 100
            * (os.cpu_count() or 1)
            if total > self._machine[1]
            else 0.0
        )
        return shares


# --- baselines ---------------------------------------------------------------


def insert_commits(settings: Settings, threads: int, seconds: float) -> float:
    """Prepared single-row INSERT commits/s, one autocommit connection a thread
    (as ``python -m bench eventstore`` measures them)."""
    table = sql.Identifier(settings.postgres_schema, f"plain_{threads}")
    with connect(settings, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (originator_id uuid, originator_version bigint,"
                " topic text, state bytea, notification_id bigserial UNIQUE,"
                " PRIMARY KEY (originator_id, originator_version))"
            ).format(table)
        )
    insert = sql.SQL(
        "INSERT INTO {} (originator_id, originator_version, topic, state)"
        " VALUES (%s, 1, 'bench:Thing.Created', %s)"
    ).format(table)
    state = b'{"timestamp": "2026-11-26T00:00:00+00:00", "name": "a thing"}' * 3
    counts = [0] * threads
    stop = threading.Event()

    def work(i: int) -> None:
        with connect(settings, autocommit=True) as conn:
            conn.execute(insert, (uuid.uuid4(), state), prepare=True)
            barrier.wait()
            while not stop.is_set():
                conn.execute(insert, (uuid.uuid4(), state), prepare=True)
                counts[i] += 1

    barrier = threading.Barrier(threads + 1)
    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    barrier.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for worker in workers:
        worker.join()
    return sum(counts) / (time.perf_counter() - began)


def kombu_publishes(prefix: str, count: int) -> float:
    """Raw kombu publishes/s, unconfirmed, persistent, into one bound queue."""
    exchange = Exchange(f"{prefix}.bench", type="topic", durable=True)
    queue = Queue(f"{prefix}.bench-sink", exchange, routing_key="#", durable=True)
    body = {"message_type": "Read", "body": {"reading": "1.5", "originator_id": "x"}}
    with Connection(URL) as connection:
        queue(connection.default_channel).declare()
        producer = Producer(connection.default_channel)
        started = time.perf_counter()
        for n in range(count):
            producer.publish(
                body,
                exchange=exchange.name,
                routing_key="meters.Read",
                serializer="json",
                delivery_mode=2,
                message_id=str(n),
            )
        elapsed = time.perf_counter() - started
        connection.default_channel.queue_delete(queue.name)
    return count / elapsed


def rpc_round_trips(prefix: str, seconds: float) -> dict[str, float]:
    """One caller's request/reply round trips over RabbitMQ to an echo server."""
    server, client = (
        KombuTransport(URL, prefix=prefix),
        KombuTransport(URL, prefix=prefix),
    )
    try:
        server.serve("echo", lambda e: e.body)
        client.call("echo", Envelope.new("echo", {}), timeout=5)
        latencies = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            client.call("echo", Envelope.new("echo", {"n": 1}), timeout=5)
            latencies.append(time.perf_counter() - started)
        return {"rate": len(latencies) / seconds, **summary(latencies)}
    finally:
        client.close()
        server.close()


def serve_bare(port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "bench.system:bare",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-access-log",
            "--log-level",
            "warning",
        ],
        cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if (
                httpx.post(f"http://127.0.0.1:{port}/bare", timeout=1).status_code
                == 200
            ):
                return process
        if time.monotonic() > deadline or process.poll() is not None:
            process.kill()
            msg = "the bare endpoint did not come up"
            raise RuntimeError(msg)
        time.sleep(0.1)


async def http_closed_loop(url: str, seconds: float, clients: int) -> dict[str, float]:
    """``clients`` httpx clients POSTing to ``url`` back to back."""
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:
        stop_at = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                reply = await client.post(url, json={"items": []})
                reply.raise_for_status()
                latencies.append(time.perf_counter() - started)

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(clients)))
        elapsed = time.perf_counter() - began
    return {"rate": len(latencies) / elapsed, **summary(latencies)}


def wrk_rate(url: str, seconds: int, connections: int) -> dict[str, float] | None:
    if not shutil.which("wrk"):
        return None
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(
            'wrk.method = "POST"\nwrk.body = "{}"\n'
            'wrk.headers["Content-Type"] = "application/json"\n'
        )
    try:
        out = subprocess.run(
            [
                *("wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"),
                *("-s", script.name, url),
            ],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    finally:
        os.unlink(script.name)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", out)
    p50 = re.search(r"50%\s+([\d.]+)(us|ms|s)", out)
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 1e-3, "ms": 1.0, "s": 1e3}
    return {
        "rate": float(rate.group(1)) if rate else float("nan"),
        "p50_ms": float(p50.group(1)) * scale[p50.group(2)] if p50 else float("nan"),
        "p99_ms": float(p99.group(1)) * scale[p99.group(2)] if p99 else float("nan"),
    }


def baselines(
    run: Run, settings: Settings, bare_url: str, seconds: float
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    print("baselines ...", flush=True)
    results["insert_1"] = insert_commits(settings, 1, seconds)
    results["insert_8"] = insert_commits(settings, 8, seconds)
    results["kombu_publish"] = kombu_publishes(run.prefix, 10_000)
    results["rpc_1"] = rpc_round_trips(run.prefix, seconds)
    results["bare_httpx"] = asyncio.run(http_closed_loop(bare_url, seconds, 16))
    results["bare_wrk"] = wrk_rate(bare_url, max(int(seconds), 1), 16)
    return results


# --- watching the read model --------------------------------------------------


def _event_time(state: bytes) -> float:
    """The timestamp of a stored event (JSON, as ordersys' transcoder writes it)."""
    found = re.search(
        rb'"timestamp":\{"_type_":"datetime_iso","_data_":"([^"]+)"', state
    )
    if found is None:
        return time.time()
    return datetime.fromisoformat(found.group(1).decode()).timestamp()


class Watcher(threading.Thread):
    """Polls the orders event table and the read model's tracking table every
    ``POLL`` s: when each order event becomes visible in the read model, and
    when each order is final there (``on_final(order_id, status, when)``)."""

    def __init__(
        self,
        settings: Settings,
        tracking_table: str,
        on_final: Callable[[str, str, float], None],
    ) -> None:
        super().__init__(name="watcher", daemon=True)
        schema = settings.postgres_schema
        self.settings = settings
        self.on_final = on_final
        self.events_sql = sql.SQL(
            "SELECT notification_id, originator_id, topic, state FROM {}"
            " WHERE notification_id > %s ORDER BY notification_id LIMIT 5000"
        ).format(sql.Identifier(schema, "orders_events"))
        self.applied_sql = sql.SQL("SELECT max(notification_id) FROM {}").format(
            sql.Identifier(schema, tracking_table)
        )
        self.stopping = threading.Event()
        self.lags: list[tuple[float, float]] = []
        """(when visible, lag in s) of every order event."""
        self.lock = threading.Lock()
        self.polls = 0

    def run(self) -> None:
        last = 0
        pending: list[tuple[int, float, str, str]] = []
        with connect(self.settings, autocommit=True) as conn:
            while not self.stopping.is_set():
                rows = conn.execute(self.events_sql, (last,), prepare=True).fetchall()
                for position, originator, topic, state in rows:
                    kind = topic.rsplit(".", 1)[-1]
                    pending.append(
                        (position, _event_time(state), str(originator), kind)
                    )
                    last = position
                row = conn.execute(self.applied_sql, prepare=True).fetchone()
                applied = int(row[0] or 0) if row else 0
                now = time.time()
                self.polls += 1
                done = 0
                for position, stamp, order_id, kind in pending:
                    if position > applied:
                        break
                    done += 1
                    with self.lock:
                        self.lags.append((now, now - stamp))
                    if kind in ("OrderConfirmed", "OrderCancelled"):
                        self.on_final(order_id, kind[5:].upper(), now)
                del pending[:done]
                self.stopping.wait(POLL)

    def lags_between(self, began: float, ended: float) -> list[float]:
        with self.lock:
            return [lag for when, lag in self.lags if began <= when <= ended]

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


class MetricsSampler(threading.Thread):
    """``ordersys_projection_lag`` of the orders service every 250 ms."""

    def __init__(self, port: int) -> None:
        super().__init__(name="metrics", daemon=True)
        self.url = f"http://127.0.0.1:{port}/metrics"
        self.samples: list[tuple[float, float]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        pattern = re.compile(
            r"^ordersys_projection_lag\{[^}]*order_details[^}]*\} (\S+)", re.M
        )
        with httpx.Client(timeout=5) as client:
            while not self.stopping.wait(0.25):
                with contextlib.suppress(httpx.HTTPError):
                    found = pattern.search(client.get(self.url).text)
                    if found:
                        self.samples.append((time.time(), float(found.group(1))))

    def between(self, began: float, ended: float) -> list[float]:
        return [lag for when, lag in self.samples if began <= when <= ended]

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


# --- the load ----------------------------------------------------------------


@dataclass
class Placed:
    order_id: str
    posted: float
    acknowledged: float
    final: float = 0.0
    status: str = ""
    seen_by_get: float = 0.0


class Finals:
    """Orders final in the read model, told by the watcher's thread; awaited by
    the clients in the event loop's."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.seen: dict[str, tuple[str, float]] = {}
        self.waiting: dict[str, asyncio.Future[tuple[str, float]]] = {}

    def tell(self, order_id: str, status: str, when: float) -> None:
        """From the watcher's thread."""
        self.loop.call_soon_threadsafe(self._told, order_id, status, when)

    def _told(self, order_id: str, status: str, when: float) -> None:
        self.seen[order_id] = (status, when)
        future = self.waiting.pop(order_id, None)
        if future is not None and not future.done():
            future.set_result((status, when))

    async def wait(self, order_id: str, timeout: float = 120.0) -> tuple[str, float]:
        if order_id in self.seen:
            return self.seen[order_id]
        future = self.loop.create_future()
        self.waiting[order_id] = future
        return await asyncio.wait_for(future, timeout)


class Load:
    """Customers placing orders through the gateway with httpx."""

    def __init__(
        self, base: str, tokens: list[str], products: list[str], finals: Finals
    ) -> None:
        self.base = base
        self.tokens = tokens
        self.products = products
        self.finals = finals
        self.turn = 0
        self.errors: dict[str, int] = {}
        limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
        self.client = httpx.AsyncClient(base_url=base, limits=limits, timeout=60)

    async def close(self) -> None:
        await self.client.aclose()

    def _failed(self, what: str) -> None:
        self.errors[what] = self.errors.get(what, 0) + 1

    async def place(self, *, poll_get: bool = False) -> Placed | None:
        self.turn += 1
        token = self.tokens[self.turn % len(self.tokens)]
        product = self.products[self.turn % len(self.products)]
        headers = {"Authorization": f"Bearer {token}"}
        body = {"items": [{"product_id": product, "quantity": 1}], "submit": True}
        posted = time.time()
        try:
            reply = await self.client.post("/orders", json=body, headers=headers)
        except httpx.HTTPError as e:
            self._failed(type(e).__name__)
            return None
        acknowledged = time.time()
        if reply.status_code != 201:
            self._failed(f"HTTP {reply.status_code}")
            return None
        written = reply.json()
        placed = Placed(written["id"], posted, acknowledged)
        tasks = [self._final(placed)]
        if poll_get:
            tasks.append(self._poll_get(placed, headers, written.get("position")))
        await asyncio.gather(*tasks)
        return placed

    async def _final(self, placed: Placed) -> None:
        try:
            placed.status, placed.final = await self.finals.wait(placed.order_id)
        except TimeoutError:
            self._failed("not final within 120 s")

    async def _poll_get(
        self, placed: Placed, headers: dict[str, str], position: int | None
    ) -> None:
        params = {"after_position": position} if position else {}
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                reply = await self.client.get(
                    f"/orders/{placed.order_id}", headers=headers, params=params
                )
                if reply.status_code == 200 and reply.json()["status"] in (
                    "CONFIRMED",
                    "CANCELLED",
                ):
                    placed.seen_by_get = time.time()
                    return
            except httpx.HTTPError as e:
                self._failed(f"GET {type(e).__name__}")
            await asyncio.sleep(GET_POLL)

    async def closed_loop(self, seconds: float, clients: int) -> list[Placed]:
        placed: list[Placed] = []
        stop_at = time.time() + seconds

        async def client() -> None:
            while time.time() < stop_at:
                order = await self.place()
                if order is None:
                    await asyncio.sleep(0.05)
                else:
                    placed.append(order)

        await asyncio.gather(*(client() for _ in range(clients)))
        return placed

    async def open_loop(self, seconds: float, rate: float) -> list[Placed]:
        placed: list[Placed] = []
        tasks = []
        began = time.time()
        count = int(seconds * rate)

        async def one(poll_get: bool) -> None:
            order = await self.place(poll_get=poll_get)
            if order is not None:
                placed.append(order)

        for n in range(count):
            delay = began + n / rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(poll_get=n % 4 == 0)))
        await asyncio.gather(*tasks)
        return placed


def seed(run: Run, base: str) -> tuple[list[str], list[str]]:
    """Products with plenty of stock (over RabbitMQ) and customers' tokens (over
    HTTP); returns (tokens, product ids) once the products can be read."""
    transport = KombuTransport(URL, prefix=run.prefix)
    try:
        products = []
        for n in range(PRODUCTS):
            created = transport.call(
                "catalog",
                Envelope.new(
                    "product.create",
                    {
                        "sku": f"SYSBENCH-{n}",
                        "name": f"benchmark product {n}",
                        "price_cents": 1000 + n,
                        "stock": STOCK,
                    },
                ),
                timeout=15,
            )
            products.append(str(created["product_id"]))
    finally:
        transport.close()
    tokens = []
    with httpx.Client(base_url=base, timeout=30) as client:
        for n in range(CUSTOMERS):
            email = f"sysbench-{n}-{uuid.uuid4().hex[:6]}@example.com"
            client.post(
                "/auth/register",
                json={"email": email, "name": f"Customer {n}", "password": PASSWORD},
            ).raise_for_status()
            login = client.post(
                "/auth/login", json={"email": email, "password": PASSWORD}
            )
            login.raise_for_status()
            tokens.append(str(login.json()["access_token"]))
        for product in products:
            deadline = time.monotonic() + 30
            while client.get(f"/products/{product}").status_code != 200:
                if time.monotonic() > deadline:
                    msg = f"product {product} not readable through the gateway"
                    raise RuntimeError(msg)
                time.sleep(0.05)
    return tokens, products


def wait_until_up(url: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while True:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1).status_code < 500:
                return
        if time.monotonic() > deadline:
            msg = f"{url} did not come up"
            raise RuntimeError(msg)
        time.sleep(0.1)


def tracking_table(settings: Settings) -> str:
    with connect(settings, autocommit=True) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT table_name FROM information_schema.tables"
                " WHERE table_schema = %s AND table_name LIKE %s",
                (settings.postgres_schema, "order\\_details\\_g%\\_tracking"),
            )
        ]
    if not names:
        msg = "the orders read model has no tracking table"
        raise RuntimeError(msg)
    return str(max(names, key=lambda n: int(n.split("_g")[1].split("_")[0])))


def wait_for_connections(settings: Settings, needed: int, within: float) -> int:
    """Wait until the server has ``needed`` connections free (it is shared);
    returns how many are free."""
    deadline = time.monotonic() + within
    while True:
        with connect(settings, autocommit=True) as conn:
            row = conn.execute(
                "SELECT current_setting('max_connections')::int - count(*)"
                " FROM pg_stat_activity"
            ).fetchone()
        free = int(row[0]) if row else 0
        if free >= needed or time.monotonic() > deadline:
            return free
        time.sleep(1)


def connections(settings: Settings) -> int:
    with connect(settings, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s", (DATABASE,)
        ).fetchone()
    return int(row[0]) if row else 0


class Profiler:
    """py-spy on some services while a phase runs (``--profile DIR``)."""

    def __init__(self, directory: Path | None, pids: Mapping[str, int]) -> None:
        self.directory = directory
        self.pids = {n: pids[n] for n in PROFILED if n in pids}
        self.processes: list[subprocess.Popen[bytes]] = []

    def start(self, seconds: float) -> None:
        spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
        if self.directory is None or not Path(spy).exists():
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        for name, pid in self.pids.items():
            self.processes.append(
                subprocess.Popen(
                    [
                        *(spy, "record", "--pid", str(pid)),
                        *("--duration", str(int(seconds)), "--rate", "100"),
                        *("--idle", "--threads", "--format", "raw"),
                        *("--output", str(self.directory / f"{name}.txt")),
                    ],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )

    def stop(self) -> None:
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


# --- the phases --------------------------------------------------------------


async def bare_open_loop(url: str, seconds: float, rate: float) -> dict[str, float]:
    """The bare endpoint at the same offered rate as the half-rate phase, from
    the same load generator: the baseline of the acknowledgement's latency."""
    latencies: list[float] = []
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=512)
    async with httpx.AsyncClient(limits=limits, timeout=30) as client:

        async def one() -> None:
            started = time.time()
            reply = await client.post(url, json={"items": [], "submit": True})
            if reply.status_code == 200:
                latencies.append(time.time() - started)

        tasks = []
        began = time.time()
        for n in range(int(seconds * rate)):
            delay = began + n / rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one()))
        await asyncio.gather(*tasks)
    return summary(latencies)


def pg_counters(settings: Settings) -> dict[str, int]:
    """Transactions committed in the run's database, and rows inserted or
    updated per table of its schema (PostgreSQL's statistics, which backends
    report within a second or so)."""
    with connect(settings, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_clear_snapshot()")
        row = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (DATABASE,)
        ).fetchone()
        counters = {"transactions": int(row[0]) if row else 0}
        for table, written in conn.execute(
            "SELECT relname, n_tup_ins + n_tup_upd FROM pg_stat_user_tables"
            " WHERE schemaname = %s",
            (settings.postgres_schema,),
        ):
            counters[table] = int(written)
    return counters


def per_order(
    before: Mapping[str, int], after: Mapping[str, int], orders: int, own: int
) -> dict[str, float]:
    """What each order cost between two :func:`pg_counters`, less ``own``
    transactions (the benchmark's watcher), rounded."""
    delta = {k: v - before.get(k, 0) for k, v in after.items()}
    delta["transactions"] -= own
    return {
        k: round(v / max(orders, 1), 1)
        for k, v in sorted(delta.items(), key=lambda kv: -kv[1])
        if v >= orders / 2 and not k.startswith("plain_")
    }


async def drive(
    run: Run,
    settings: Settings,
    base: str,
    bare_url: str,
    seconds: float,
    clients: int,
    profile: Path | None,
) -> dict[str, Any]:
    tokens, products = seed(run, base)
    finals = Finals(asyncio.get_running_loop())
    watcher = Watcher(settings, tracking_table(settings), finals.tell)
    sampler = MetricsSampler(run.metrics_port)
    load = Load(base, tokens, products, finals)
    results: dict[str, Any] = {"connections_idle": connections(settings)}
    watcher.start()
    sampler.start()
    try:
        print(
            f"sustained: {clients} clients, closed loop, {WARMUP:g}+{seconds:g} s ...",
            flush=True,
        )
        meter = CpuMeter(run.pids())
        profiler = Profiler(profile, run.pids())
        meter.start()
        profiler.start(WARMUP + seconds)
        began = time.time()
        peak = [0]

        async def count_connections() -> None:
            while True:
                await asyncio.sleep(2)
                peak[0] = max(peak[0], await asyncio.to_thread(connections, settings))

        counting = asyncio.create_task(count_connections())
        counters: list[dict[str, int]] = []
        polls: list[int] = []

        async def count_writes() -> None:
            await asyncio.sleep(WARMUP)
            polls.append(watcher.polls)
            counters.append(await asyncio.to_thread(pg_counters, settings))

        counting_writes = asyncio.create_task(count_writes())
        placed = await load.closed_loop(WARMUP + seconds, clients)
        ended = time.time()
        await counting_writes
        polls.append(watcher.polls)
        counters.append(await asyncio.to_thread(pg_counters, settings))
        counting.cancel()
        cpu = meter.stop()
        profiler.stop()
        window = (began + WARMUP, ended)
        confirmed = [p for p in placed if p.status == "CONFIRMED"]
        in_window = [p for p in confirmed if window[0] <= p.final <= window[1]]
        rate = len(in_window) / (window[1] - window[0])
        results["sustained"] = {
            "clients": clients,
            "seconds": window[1] - window[0],
            "orders_per_s": rate,
            "placed": len(placed),
            "confirmed": len(confirmed),
            "cancelled": sum(p.status == "CANCELLED" for p in placed),
            "ack": summary(
                [p.acknowledged - p.posted for p in placed if p.posted >= window[0]]
            ),
            "to_confirmed": summary(
                [p.final - p.posted for p in in_window if p.posted >= window[0]]
            ),
            "lag": summary(watcher.lags_between(*window)),
            "lag_events_p99": percentile(sampler.between(*window), 0.99),
            "lag_events_max": max(sampler.between(*window), default=float("nan")),
            "cpu_percent": cpu,
            "connections_peak": peak[0],
            # The watcher's two statements a poll, the connection counter's one
            # every 2 s and the counters' own are not the system's.
            "per_order": per_order(
                counters[0],
                counters[1],
                len(in_window),
                2 * (polls[1] - polls[0]) + int(window[1] - window[0]) // 2 + 3,
            ),
        }
        print(f"  {rate:.1f} orders/s to CONFIRMED", flush=True)
        await asyncio.sleep(2)  # stragglers of the closed loop

        half = max(rate / 2, 1.0)
        print(
            f"half rate: {half:.1f} orders/s, open loop, {seconds:g} s ...", flush=True
        )
        meter = CpuMeter(run.pids())
        meter.start()
        began = time.time()
        placed = await load.open_loop(seconds, half)
        ended = time.time()
        cpu = meter.stop()
        confirmed = [p for p in placed if p.status == "CONFIRMED"]
        results["half_rate"] = {
            "offered_per_s": half,
            "seconds": seconds,
            "placed": len(placed),
            "confirmed": len(confirmed),
            "cancelled": sum(p.status == "CANCELLED" for p in placed),
            "ack": summary([p.acknowledged - p.posted for p in placed]),
            "to_confirmed": summary([p.final - p.posted for p in confirmed]),
            "to_confirmed_get": summary(
                [p.seen_by_get - p.posted for p in confirmed if p.seen_by_get]
            ),
            "lag": summary(watcher.lags_between(began, ended)),
            "lag_events_p99": percentile(sampler.between(began, ended), 0.99),
            "cpu_percent": cpu,
        }
        results["errors"] = load.errors
        results["watcher_polls"] = watcher.polls
        print(f"bare endpoint at {half:.1f}/s, open loop ...", flush=True)
        results["half_rate"]["bare_ack"] = await bare_open_loop(bare_url, seconds, half)
    finally:
        await load.close()
        sampler.stop()
        watcher.stop()
    return results


def amplify(settings: Settings, target: int) -> int:
    """Copy the run's order events under new order ids (in the order they were
    written) until there are about ``target``; returns how many copies."""
    table = sql.Identifier(settings.postgres_schema, "orders_events")
    with connect(settings, autocommit=True) as conn:
        row = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()
        written = int(row[0]) if row else 0
        copies = max(target // written - 1, 0) if written else 0
        if copies:
            conn.execute(
                sql.SQL(
                    "INSERT INTO {0} (originator_id, originator_version, topic, state,"
                    " transaction_id)"
                    " SELECT md5(e.originator_id::text || '/' || k)::uuid,"
                    " e.originator_version, e.topic, e.state, pg_current_xact_id()"
                    " FROM generate_series(1, %s) AS k, {0} AS e"
                    " ORDER BY k, e.notification_id"
                ).format(table),
                (copies,),
            )
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(table))
    return copies


def rebuild(
    settings: Settings, target: int, profile: Path | None = None
) -> dict[str, float]:
    """The orders read model rebuilt from the order events, beside a raw keyset
    scan of the same rows (pages of 500, psycopg binary). With ``profile``, the
    rebuild runs under cProfile and its top functions go to rebuild.txt there."""
    copies = amplify(settings, target)
    orders = Orders(settings)
    try:
        events = orders.head_position()
        runner = ProjectionRunner(OrderDetails, orders)
        profiler = cProfile.Profile() if profile else None
        started = time.perf_counter()
        if profiler:
            profiler.runcall(runner.rebuild)
        else:
            runner.rebuild()
        rebuilt = time.perf_counter() - started
        runner.store.close()
        if profiler and profile:
            profile.mkdir(parents=True, exist_ok=True)
            with (profile / "rebuild.txt").open("w") as out:
                stats = pstats.Stats(profiler, stream=out)
                stats.sort_stats("cumulative").print_stats(40)
                stats.sort_stats("tottime").print_stats(25)
    finally:
        orders.close()
    scan = sql.SQL(
        "SELECT notification_id, originator_id, originator_version, topic, state"
        " FROM {} WHERE notification_id > %s ORDER BY notification_id LIMIT 500"
    ).format(sql.Identifier(settings.postgres_schema, "orders_events"))
    with connect(settings, autocommit=True) as conn:
        started = time.perf_counter()
        seen, last = 0, 0
        while rows := conn.execute(scan, (last,), prepare=True, binary=True).fetchall():
            seen += len(rows)
            last = rows[-1][0]
        scanned = time.perf_counter() - started
    return {
        "events": events,
        "copies": copies,
        "rebuild_per_s": events / rebuilt,
        "rebuild_seconds": rebuilt,
        "scan_per_s": seen / scanned,
    }


# --- the report --------------------------------------------------------------


def revision() -> str:
    """The commit measured, and whether src/ differed from it."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "src"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return commit + (" + uncommitted changes in src/" if dirty else "")


def machine() -> str:
    cpu = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return f"{os.cpu_count()} CPUs ({cpu}), Python {sys.version.split()[0]}"


OURS = ("postgres (this run)", "rabbitmq", "redis", "load generator (bench)")


def others(cpu: Mapping[str, float]) -> float:
    """CPU the machine spent on work that is not this run's (other sessions)."""
    ours = sum(v for k, v in cpu.items() if k in SERVICES or k in OURS)
    return max(cpu["machine (2 cores = 200%)"] - ours, 0.0)


def in_window(sustained: Mapping[str, Any]) -> int:
    return round(float(sustained["orders_per_s"]) * float(sustained["seconds"]))


def report(results: dict[str, Any]) -> None:
    b, s, h, r = (
        results["baselines"],
        results["sustained"],
        results["half_rate"],
        results["rebuild"],
    )
    line = "-" * 100
    print()
    print(f"The whole system on {results['machine']}, at {results['revision']}")
    print(line)
    print(f"{'measure':<50} {'figure':>15}   baseline (same run)")
    print(line)

    def row(name: str, figure: str, baseline: str = "") -> None:
        print(f"{name:<50} {figure:>15}   {baseline}".rstrip())

    def ms(figures: Mapping[str, float], digits: int = 1) -> str:
        return f"{figures['p50_ms']:.{digits}f} / {figures['p99_ms']:.{digits}f}"

    row(
        f"orders/s, POST to CONFIRMED ({s['clients']} clients)",
        f"{s['orders_per_s']:.1f}",
        f"INSERT commits/s, 1 writer: {b['insert_1']:,.0f};"
        f" RPC round trips/s, 1 caller: {b['rpc_1']['rate']:,.0f}",
    )
    row("  POST ack at that load, p50 / p99 ms", ms(s["ack"]))
    row("  POST to CONFIRMED at that load, p50 / p99 ms", ms(s["to_confirmed"], 0))
    row("  read-model lag at that load, p50 / p99 ms", ms(s["lag"], 0))
    row(
        f"POST ack at half rate ({h['offered_per_s']:.1f}/s), p50 / p99 ms",
        ms(h["ack"]),
        f"bare uvicorn POST at the same rate: {ms(h['bare_ack'])} ms",
    )
    row(
        "POST to CONFIRMED (read model), p50 / p99 ms",
        ms(h["to_confirmed"], 0),
        f"one RPC round trip: {ms(b['rpc_1'], 2)} ms",
    )
    row(
        "POST to CONFIRMED (GET polls, 1 in 4), p50 / p99 ms",
        ms(h["to_confirmed_get"], 0),
    )
    row(
        "read-model lag at half rate, p50 / p99 ms",
        ms(h["lag"], 0),
        f"/metrics lag p99: {h['lag_events_p99']:.0f} events",
    )
    row(
        f"projection rebuild, events/s ({r['events']:,} events)",
        f"{r['rebuild_per_s']:,.0f}",
        f"raw keyset scan of the same rows: {r['scan_per_s']:,.0f} rows/s",
    )
    print(line)
    row(
        "baseline: INSERT commits/s, 1 / 8 writers",
        f"{b['insert_1']:,.0f} / {b['insert_8']:,.0f}",
    )
    row("baseline: raw kombu publish/s, unconfirmed", f"{b['kombu_publish']:,.0f}")
    row(
        "baseline: RPC round trips/s, 1 caller (echo)",
        f"{b['rpc_1']['rate']:,.0f}",
        f"p50 / p99 {ms(b['rpc_1'], 2)} ms",
    )
    row(
        "baseline: bare uvicorn POST req/s, httpx, 16",
        f"{b['bare_httpx']['rate']:,.0f}",
        f"p50 / p99 {ms(b['bare_httpx'])} ms (the load generator's own limit)",
    )
    if b["bare_wrk"]:
        row(
            "baseline: bare uvicorn POST req/s, wrk, 16",
            f"{b['bare_wrk']['rate']:,.0f}",
            f"p50 / p99 {ms(b['bare_wrk'], 2)} ms",
        )
    print(line)
    targets = [
        (">= 250 orders/s to CONFIRMED", s["orders_per_s"] >= 250),
        ("p99 ack < 50 ms at half rate", h["ack"]["p99_ms"] < 50),
        ("p99 read-model lag < 250 ms at half rate", h["lag"]["p99_ms"] < 250),
    ]
    print(
        "targets: " + "; ".join(f"{t} {'met' if ok else 'MISSED'}" for t, ok in targets)
    )
    for phase, figures in (("sustained", s), ("half rate", h)):
        cpu = figures["cpu_percent"]
        shares = sorted(
            ((k, v) for k, v in cpu.items() if not k.startswith("machine")),
            key=lambda kv: -kv[1],
        )
        print(
            f"CPU, {phase} (% of one core): "
            + ", ".join(f"{k} {v:.0f}" for k, v in shares if v >= 1)
            + f"; machine {cpu['machine (2 cores = 200%)']:.0f} of 200,"
            f" of it other sessions' work about {others(cpu):.0f}"
        )
    if s["per_order"] and in_window(s):
        print(
            "per order confirmed, sustained: PostgreSQL commits, and rows written"
            " by table: " + ", ".join(f"{k} {v:g}" for k, v in s["per_order"].items())
        )
    if r["copies"]:
        print(
            f"rebuild: the run's order events, and {r['copies']} copies of them under"
            f" new order ids, {r['rebuild_seconds']:.1f} s"
        )
    troubles = {k: v for k, v in results.get("service_log", {}).items() if v}
    if troubles:
        print(
            "DISTURBED: the services logged "
            + ", ".join(f"{k}: {v}" for k, v in troubles.items())
            + " (shared servers: another session's faults?); see the log"
        )
    print(
        f"orders placed {s['placed']} + {h['placed']}, cancelled"
        f" {s['cancelled'] + h['cancelled']}; errors: {results['errors'] or 'none'};"
        f" PostgreSQL connections idle {results['connections_idle']},"
        f" peak {s['connections_peak']}"
    )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench system")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--baseline-seconds", type=float, default=3.0)
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/system.json")
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--pool-size", type=int, default=2)
    parser.add_argument("--rebuild-events", type=int, default=50_000)
    args = parser.parse_args(argv)

    run = Run(pool_size=args.pool_size)
    settings = run.settings()
    ensure_database(settings)
    with connect(settings, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(run.schema)))
    results: dict[str, Any] = {
        "machine": machine(),
        "revision": revision(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    bare_port = free_port()
    bare_url = f"http://127.0.0.1:{bare_port}/bare"
    bare_process = serve_bare(bare_port)
    try:
        results["baselines"] = baselines(run, settings, bare_url, args.baseline_seconds)
        free = wait_for_connections(settings, 40, 120)
        print(
            f"starting the services ({free} PostgreSQL connections free;"
            f" log: {run.log}) ...",
            flush=True,
        )
        run.start()
        base = f"http://127.0.0.1:{run.gateway_port}"
        wait_until_up(f"{base}/health/live")
        results.update(
            asyncio.run(
                drive(
                    run,
                    settings,
                    base,
                    bare_url,
                    args.seconds,
                    args.clients,
                    args.profile,
                )
            )
        )
        run.stop()
        print("rebuild ...", flush=True)
        results["rebuild"] = rebuild(settings, args.rebuild_events, args.profile)
        results["service_log"] = disturbances(run.log)
    finally:
        run.stop()
        bare_process.terminate()
        bare_process.wait(10)
        cleanup(run, settings)
    report(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, default=str))
    print(f"results: {args.json}")
    return 0


def disturbances(log: Path) -> dict[str, int]:
    """What the services logged that would disturb the figures: broker or
    database connections lost (the servers are shared), errors."""
    try:
        text = log.read_text()
    except OSError:
        return {}
    return {
        "connections lost": text.count("lost its connection")
        + text.count("InfrastructureUnavailable"),
        "errors logged": text.count('"level": "ERROR"'),
    }


def cleanup(run: Run, settings: Settings) -> None:
    actions: list[Callable[[], None]] = [
        lambda: delete_topology(run.prefix),
        lambda: forget_cache(settings.redis_url, run.prefix),
    ]
    for action in actions:
        try:
            action()
        except Exception as e:
            print(f"cleanup: {e!r}", file=sys.stderr)
    with connect(settings, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(run.schema)
            )
        )
