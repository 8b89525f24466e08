"""The whole system under load: orders/s from HTTP to CONFIRMED, CPU and
commits per order, latencies, projection lag and rebuild, beside baselines
measured in the same run.

    python -m bench system [--seconds 20] [--clients 64] [--baseline-seconds 3]
                           [--rebuild-events 50000] [--pool-size 2]
                           [--json bench/results/system.json] [--profile DIR]
                           [--replicas N]

Needs ``wrk`` (Debian's package; ``make bench`` installs it when it may) and
refuses to run without it: a generator in Python would measure its own limit.
Starts every service as ``ordersys up`` does (``ordersys run <name>``, a
process each, commands and events over RabbitMQ, the gateway last) on a
PostgreSQL schema, RabbitMQ prefix and Redis prefix of its own in the
database ``ordersys_sysbench``; seeds products with plenty of stock and
registers customers through the gateway. The load is wrk with
bench/system_orders.lua, the customers' tokens and the product ids written
into a copy of it: ``POST /orders`` (one item, ``submit: true``), each
request the next customer. Then:

1. **Baselines** (before the services start): prepared single-row
   ``INSERT`` commits/s from psycopg, 1 and 8 writers; raw kombu publishes/s
   (unconfirmed); RPC round trips/s of one caller to an echo server over the
   same RabbitMQ (one saga step is one such round trip); a bare FastAPI
   endpoint on uvicorn loaded by the same wrk script (closed loop, 16
   connections). After phase 3 the bare endpoint is loaded once more at the
   half rate, paced, as the baseline of the acknowledgement's latency.
2. **Sustained** (closed loop over orders): wrk with half as many
   connections as ``--clients`` POSTs for 3 s of warm-up and ``--seconds``,
   held by a gate to about ``--clients`` orders in flight (placed, not yet
   final in the read model), as many clients that each wait for their
   order's confirmation would be: the benchmark rewrites a small file every
   50 ms from the watcher's counts, and the script's ``delay()`` reads it.
   Orders/s is the growth of the count of CONFIRMED orders in the read model
   (``order_details``) over the last ``--seconds``, divided by them; the
   report says how the backlog moved meanwhile, and the next phase starts
   once it has drained.
3. **Half rate** (open loop): wrk paces its requests (``delay()``) at a
   constant half of the sustained rate for ``--seconds``: p50/p99 of the
   ``POST`` acknowledgement (wrk's own latency distribution), of the order's
   placing (its ``OrderPlaced`` event's timestamp) to CONFIRMED in the read
   model, and the read-model lag.
4. **Rebuild**: with the services stopped, the run's order events are copied
   under new order ids up to about ``--rebuild-events`` (default 50,000), then
   ``ProjectionRunner(OrderDetails, Orders(settings)).rebuild()`` runs over
   all of them, beside a raw keyset scan of the same rows.

Read-model lag is measured by a watcher thread that polls, every 10 ms, the
orders event table (new events, with their timestamps) and the read model's
tracking table (the last applied position) in one statement: an event's lag
is the first poll that finds it applied minus the event's timestamp, so
figures are upper bounds by up to one poll. The orders service's
``ordersys_projection_lag`` (in events) is sampled from its /metrics every
second as well. CPU of every process (the services, PostgreSQL's backends of
this run and its own background processes, RabbitMQ, Redis, wrk, the
watcher thread with its backend, the rest of the benchmark, and the machine
as a whole) is read from /proc over each measured window; CPU ms per
confirmed order are each one's CPU in the sustained window over the orders
confirmed in it. PostgreSQL's statistics give the commits and rows written
per order (the benchmark's own statements left out), and the saga's events
per order are the rows written to ``orderprocess_events``.
``--profile DIR`` records ``py-spy`` stacks (raw format, on-CPU samples
only, per thread, without pausing the process) of every service during the
sustained phase, and the rebuild under cProfile: a profiled run is
slower, so take figures from a run without it. ``--pool-size`` (default 2) is
each service's ``ORDERSYS_POSTGRES_POOL_SIZE``: the server's connections are
shared with other work, and pools still grow under load.

``--replicas N`` (N > 1) measures scaling instead: the sustained phase alone,
first on a system with one process of every service, then on a fresh one
with N of each (the gateways on consecutive ports, one wrk per gateway, each
gated to its share of the orders in flight), and prints orders/s, CPU ms per
order and the CPU of every process for both.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import json
import math
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
from collections import deque
from collections.abc import Callable, Mapping, Sequence
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

from ordersys.errors import InfrastructureUnavailable
from ordersys.persistence.database import connect, ensure_database
from ordersys.projections import ProjectionRunner
from ordersys.settings import Settings, load_settings
from ordersys.shop.orders.projections import OrderDetails
from ordersys.shop.orders.service import Orders
from ordersys.shop.services import SERVICES
from ordersys.transport import Envelope
from ordersys.transport.rabbitmq import KombuTransport

# The same rule for a run of ports as the tests: below the ephemeral range.
from tests.servers import free_ports

ROOT = Path(__file__).resolve().parent.parent
DATABASE = "ordersys_sysbench"
"""The prefix of each run's own database: its backends are told apart by name."""
URL = "amqp://guest:guest@127.0.0.1:5672//"
SECRET = "the system benchmark's gateway key, long enough for HS256"
PASSWORD = "system-benchmark-pw"
CUSTOMERS = 16
PRODUCTS = 8
STOCK = 100_000_000
WARMUP = 3.0
POLL = 0.01
GET_POLL = 0.02
PROFILED = SERVICES

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

    def __init__(
        self, name: str, env: Mapping[str, str], log: Path, label: str = ""
    ) -> None:
        self.name = name
        self.label = label or name
        """The replica's name in the log and the CPU split (``orders#2``)."""
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
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        # The log is this thread's: closed once the process's output ends,
        # which may be after the process has exited.
        assert self.process.stdout is not None
        with self.log:
            for line in self.process.stdout:
                self.log.write(f"[{self.label}] {line}")
                self.log.flush()
                if line.startswith((f"{self.label} ready", f"{self.name} ready")):
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
        self._reader.join(10)


@dataclass
class Run:
    """Where this run lives: its settings, names and processes."""

    database: str = field(default_factory=lambda: f"{DATABASE}_{uuid.uuid4().hex[:8]}")
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
    replicas: int = 1
    """Processes of every service; the gateway's listen on consecutive ports
    from ``gateway_port``."""

    def env(self) -> dict[str, str]:
        overrides = {
            "POSTGRES_DBNAME": self.database,
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
                "postgres_dbname": self.database,
                "postgres_schema": self.schema,
                "messaging_prefix": self.prefix,
                "cache_prefix": self.prefix,
            }
        )

    @property
    def gateway_ports(self) -> list[int]:
        return [self.gateway_port + n for n in range(self.replicas)]

    def start(self) -> None:
        env = self.env()
        started = []
        for name in SERVICES:
            for replica in range(self.replicas):
                extra = {"ORDERSYS_METRICS_PORT": "0"}
                if name == "gateway":
                    extra = {"ORDERSYS_GATEWAY_PORT": str(self.gateway_port + replica)}
                elif name == "orders" and replica == 0:
                    extra = {"ORDERSYS_METRICS_PORT": str(self.metrics_port)}
                label = name
                if self.replicas > 1:
                    label = f"{name}#{replica + 1}"
                    extra["ORDERSYS_REPLICA"] = str(replica + 1)
                process = ServiceProcess(name, {**env, **extra}, self.log, label)
                self.processes[label] = process
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
    with Connection(URL) as connection:  # type: ignore[no-untyped-call]
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
CORES = os.cpu_count() or 1
MACHINE = f"machine ({CORES} cores = {CORES * 100}%)"
GENERATOR = "load generator (wrk)"
WATCHER = "watcher (bench)"
BENCH = "bench, the rest"
SERVERS = ("postgres (this run)", "postgres (server)", "rabbitmq", "redis")
"""With the services, the system: PostgreSQL's backends of this run and its
own processes (postmaster, WAL writer, checkpointer...), RabbitMQ and Redis."""
BACKGROUND = (
    "checkpointer",
    "background writer",
    "walwriter",
    "autovacuum launcher",
    "logical replication launcher",
    "archiver",
    "stats collector",
)


def _cpu_seconds(path: str) -> float | None:
    """utime + stime of ``/proc/<pid>`` or ``/proc/<pid>/task/<tid>``, None
    once it has gone."""
    try:
        fields = Path(path, "stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / TICK


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


@dataclass
class Own:
    """The benchmark's own load: wrk, the watcher thread, and the PostgreSQL
    backends of the watcher and of the probe, which are not the system's."""

    wrk: int | None = None
    watcher_thread: int | None = None
    watcher_backend: int | None = None
    probe_backend: int | None = None


class CpuMeter:
    """CPU used by groups of processes between ``start()`` and ``stop()``:
    ``stop()`` answers shares of one core (100% = one core busy), and
    :attr:`seconds` keeps the CPU seconds of each group."""

    def __init__(self, services: Mapping[str, int], database: str, own: Own) -> None:
        self.services = dict(services)
        self.database = database
        self.own = own
        self.seconds: dict[str, float] = {}
        self.elapsed = 0.0

    def groups(self) -> dict[str, list[tuple[str, int]]]:
        """Each group's /proc paths, with the sign they count with."""
        me, own = os.getpid(), self.own
        groups: dict[str, list[tuple[str, int]]] = {
            name: [(f"/proc/{pid}", 1)] for name, pid in self.services.items()
        }
        groups.update({name: [] for name in (*SERVERS, "postgres (other)")})
        groups[BENCH] = [(f"/proc/{me}", 1)]
        groups[WATCHER] = []
        if own.wrk:
            groups[GENERATOR] = [(f"/proc/{own.wrk}", 1)]
        if own.watcher_thread:
            thread = f"/proc/{me}/task/{own.watcher_thread}"
            groups[WATCHER].append((thread, 1))
            groups[BENCH].append((thread, -1))
        if own.watcher_backend:
            groups[WATCHER].append((f"/proc/{own.watcher_backend}", 1))
        if own.probe_backend:
            groups[BENCH].append((f"/proc/{own.probe_backend}", 1))
        mine = {own.watcher_backend, own.probe_backend}
        this_run = re.compile(rf" {re.escape(self.database)}( |$)")
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in mine:
                continue
            line = _cmdline(int(entry.name))
            if line.startswith("postgres: ") or "/bin/postgres " in line:
                # The postmaster and the background processes work for every
                # database; backends (and autovacuum workers) name theirs.
                if "/bin/postgres " in line or any(
                    f": {name}" in line for name in BACKGROUND
                ):
                    key = "postgres (server)"
                elif this_run.search(line):
                    key = "postgres (this run)"
                else:
                    key = "postgres (other)"
                groups[key].append((str(entry), 1))
            elif "beam.smp" in line and "rabbit" in line:
                groups["rabbitmq"].append((str(entry), 1))
            elif line.startswith("redis-server"):
                groups["redis"].append((str(entry), 1))
        return groups

    def start(self) -> None:
        self._began = time.monotonic()
        self._machine = _machine_busy()
        self._start = {
            path: seconds
            for group in self.groups().values()
            for path, _ in group
            if (seconds := _cpu_seconds(path)) is not None
        }

    def stop(self) -> dict[str, float]:
        self.elapsed = time.monotonic() - self._began
        busy, total = _machine_busy()
        for name, paths in self.groups().items():
            used = 0.0
            for path, sign in paths:
                # A backend that appeared meanwhile started from nothing; one
                # that ended took its CPU time along.
                seconds = _cpu_seconds(path)
                if seconds is not None:
                    used += sign * (seconds - self._start.get(path, 0.0))
            self.seconds[name] = used
        shares = {k: v / self.elapsed * 100 for k, v in self.seconds.items()}
        shares[MACHINE] = (
            (busy - self._machine[0]) / (total - self._machine[1]) * 100 * CORES
            if total > self._machine[1]
            else 0.0
        )
        return shares

    def per_order(self, orders: int) -> dict[str, float]:
        """CPU ms per order of each group, and of the system's in total."""
        if orders <= 0:
            return {}
        ms = {k: v * 1e3 / orders for k, v in self.seconds.items()}
        ms["system, in total"] = sum(
            v for k, v in ms.items() if k in self.services or k in SERVERS
        )
        return ms


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
    exchange = Exchange(f"{prefix}.bench", type="topic", durable=True)  # type: ignore[no-untyped-call]
    queue = Queue(f"{prefix}.bench-sink", exchange, routing_key="#", durable=True)  # type: ignore[no-untyped-call]
    body = {"message_type": "Read", "body": {"reading": "1.5", "originator_id": "x"}}
    with Connection(URL) as connection:  # type: ignore[no-untyped-call]
        queue(connection.default_channel).declare()  # type: ignore[no-untyped-call]
        producer = Producer(connection.default_channel)  # type: ignore[no-untyped-call]
        started = time.perf_counter()
        for n in range(count):
            producer.publish(  # type: ignore[no-untyped-call]
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


LUA = Path(__file__).with_name("system_orders.lua")


class Wrk:
    """One wrk run of bench/system_orders.lua, started at once: ``POST path``
    with ``tokens`` and ``products`` baked into a copy of the script, back to
    back, paced at ``rate`` requests/s, or held to the orders a :class:`Gate`
    allows. One thread: at these rates wrk mostly waits."""

    def __init__(
        self,
        base: str,
        path: str,
        tokens: Sequence[str],
        products: Sequence[str],
        *,
        connections: int,
        seconds: float,
        rate: float = 0.0,
        gate: Path | None = None,
    ) -> None:
        self.directory = Path(tempfile.mkdtemp(prefix="ordersys-sysbench-wrk-"))
        self.report = self.directory / "report.json"
        script = self.directory / "orders.lua"

        def strings(values: Sequence[str]) -> str:
            return "{" + ", ".join(json.dumps(v) for v in values) + "}"

        prelude = [
            f"path = {json.dumps(path)}",
            f"tokens = {strings(tokens)}",
            f"products = {strings(products)}",
            f"rate = {float(rate)!r}",
            f"gate = {json.dumps(str(gate) if gate else '')}",
            f"report = {json.dumps(str(self.report))}",
        ]
        script.write_text("\n".join(prelude) + "\n" + LUA.read_text())
        self.seconds = max(math.ceil(seconds), 1)
        self.process = subprocess.Popen(
            [
                *("wrk", "-t1", f"-c{connections}", f"-d{self.seconds}s"),
                *("--timeout", "30s", "-s", str(script), base),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.pid = self.process.pid

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        shutil.rmtree(self.directory, ignore_errors=True)

    def result(self) -> dict[str, Any]:
        """Once wrk is done: answers/s (the 2xx ones), errors, and the
        latency distribution in ms."""
        try:
            _, complaints = self.process.communicate(timeout=self.seconds + 60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            _, complaints = self.process.communicate()
        try:
            figures = json.loads(self.report.read_text())
        except (OSError, ValueError):
            msg = (
                f"wrk gave no figures (exit code {self.process.returncode}):"
                f" {complaints.strip()}"
            )
            raise RuntimeError(msg) from None
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)
        errors = {k: v for k, v in figures["errors"].items() if v}
        answered = figures["requests"] - errors.get("status", 0)
        latency = figures["latency_us"]
        return {
            "requests": figures["requests"],
            "answered_2xx": answered,
            "rate": answered / (figures["duration_us"] / 1e6),
            "errors": errors,
            **{f"{k}_ms": v / 1e3 for k, v in latency.items()},
        }


def rabbitmq_counters() -> dict[str, int]:
    """Messages published to and delivered by the broker so far (its global
    counters, every vhost; empty if ``rabbitmqctl`` cannot say)."""
    try:
        listed = subprocess.run(
            ["rabbitmqctl", "-q", "eval", "rabbit_global_counters:overview()."],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    received = re.search(r"messages_received_total => (\d+)", listed)
    delivered = re.findall(r"messages_delivered_total => (\d+)", listed)
    if received is None:
        return {}
    return {
        "published": int(received.group(1)),
        "delivered": sum(int(n) for n in delivered),
    }


def baselines(
    run: Run, settings: Settings, bare: str, seconds: float
) -> dict[str, Any]:
    results: dict[str, Any] = {}
    print("baselines ...", flush=True)
    results["insert_1"] = insert_commits(settings, 1, seconds)
    results["insert_8"] = insert_commits(settings, 8, seconds)
    results["kombu_publish"] = kombu_publishes(run.prefix, 10_000)
    results["rpc_1"] = rpc_round_trips(run.prefix, seconds)
    bare_wrk = Wrk(bare, "/bare", ["-"], ["-"], connections=16, seconds=seconds)
    results["bare_wrk"] = bare_wrk.result()
    return results


# --- watching the read model --------------------------------------------------

STAMP = re.compile(rb'"timestamp":[^0-9]{0,60}?(\d{4}-\d\d-\d\dT[^"]+)"')
FINAL = {"OrderConfirmed": "CONFIRMED", "OrderCancelled": "CANCELLED"}


def _event_time(state: bytes) -> float | None:
    """The timestamp of a stored event (JSON, as ordersys' transcoder writes
    it), or None if it has none that can be read."""
    found = STAMP.search(state)
    if found is None:
        return None
    with contextlib.suppress(ValueError):
        return datetime.fromisoformat(found.group(1).decode()).timestamp()
    return None


class Watcher(threading.Thread):
    """Polls, every ``POLL`` s in one statement, the read model's last applied
    position and the order events written since the last poll: when each
    event becomes visible in the read model (its lag), how many orders are
    placed and how many are final there, and each confirmed order's time from
    its ``OrderPlaced`` event to CONFIRMED in the read model."""

    def __init__(self, settings: Settings, tracking_table: str) -> None:
        super().__init__(name="watcher", daemon=True)
        schema = settings.postgres_schema
        self.settings = settings
        self.poll_sql = sql.SQL(
            "SELECT a.applied, e.notification_id, e.originator_id, e.topic, e.state"
            " FROM (SELECT max(notification_id) AS applied FROM {}) AS a"
            " LEFT JOIN LATERAL (SELECT notification_id, originator_id, topic, state"
            " FROM {} WHERE notification_id > %s ORDER BY notification_id"
            " LIMIT 5000) AS e ON true"
        ).format(
            sql.Identifier(schema, tracking_table),
            sql.Identifier(schema, "orders_events"),
        )
        self.stopping = threading.Event()
        self.connected = threading.Event()
        self.backend: int | None = None
        self.lock = threading.Lock()
        self.lags: list[tuple[float, float]] = []
        """(when visible, lag in s) of every order event."""
        self.confirmations: list[tuple[float, float]] = []
        """(when visible, s since the order's OrderPlaced) of every confirmation."""
        self.placed = 0
        self.final = 0
        self.polls = 0

    def run(self) -> None:
        last = 0
        pending: list[tuple[int, float | None, str, str]] = []
        placed_at: dict[str, float] = {}
        with connect(self.settings, autocommit=True) as conn:
            row = conn.execute("SELECT pg_backend_pid()").fetchone()
            self.backend = int(row[0]) if row else None
            self.connected.set()
            while not self.stopping.is_set():
                rows = conn.execute(self.poll_sql, (last,), prepare=True).fetchall()
                now = time.time()
                self.polls += 1
                applied = int(rows[0][0] or 0) if rows else 0
                for _, position, originator, topic, state in rows:
                    if position is None:
                        break
                    kind = topic.rsplit(".", 1)[-1]
                    stamp = _event_time(state)
                    if kind == "OrderPlaced":
                        self.placed += 1
                        if stamp is not None:
                            placed_at[str(originator)] = stamp
                    pending.append((position, stamp, str(originator), kind))
                    last = position
                done = 0
                with self.lock:
                    for position, stamp, order_id, kind in pending:
                        if position > applied:
                            break
                        done += 1
                        if stamp is not None:
                            self.lags.append((now, now - stamp))
                        if kind in FINAL:
                            self.final += 1
                            placed = placed_at.pop(order_id, None)
                            if kind == "OrderConfirmed" and placed is not None:
                                self.confirmations.append((now, now - placed))
                del pending[:done]
                self.stopping.wait(POLL)

    def backlog(self) -> int:
        """Orders placed and not final in the read model yet (about: an
        event committed after a later one can be missed by a poll)."""
        with self.lock:
            return max(self.placed - self.final, 0)

    def lags_between(self, began: float, ended: float) -> list[float]:
        with self.lock:
            return [lag for when, lag in self.lags if began <= when <= ended]

    def confirmed_between(self, began: float, ended: float) -> list[float]:
        with self.lock:
            return [s for when, s in self.confirmations if began <= when <= ended]

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


class MetricsSampler(threading.Thread):
    """``ordersys_projection_lag`` of the orders service every second (the
    service renders its metrics for each sample: not more often)."""

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
            while not self.stopping.wait(1.0):
                with contextlib.suppress(httpx.HTTPError):
                    found = pattern.search(client.get(self.url).text)
                    if found:
                        self.samples.append((time.time(), float(found.group(1))))

    def between(self, began: float, ended: float) -> list[float]:
        return [lag for when, lag in self.samples if began <= when <= ended]

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


class Gate(threading.Thread):
    """wrk's gate (bench/system_orders.lua): rewrites its file every 50 ms
    with the POSTs allowed so far, the orders final in the read model since
    the gate opened plus ``in_flight``, and the orders/s final over the last
    second, both from the watcher's counts (no statement of its own)."""

    def __init__(
        self, path: Path, watcher: Watcher, in_flight: int, share: float = 1.0
    ) -> None:
        super().__init__(name="gate", daemon=True)
        self.path = path
        self.watcher = watcher
        self.in_flight = in_flight
        self.share = share
        """This gate's part of the orders, when several wrk share the load."""
        self.began = watcher.final
        self.owed = watcher.backlog()
        self.stopping = threading.Event()
        # Until the first order is final, the pace can only be guessed: high,
        # or the first requests beyond the allowed would wait too long.
        self._write(in_flight - self.owed, in_flight)

    def _write(self, allowed: int, pace: float) -> None:
        spare = self.path.with_suffix(".new")
        spare.write_text(f"{int(allowed * self.share)} {pace * self.share:.1f}\n")
        os.replace(spare, self.path)

    def run(self) -> None:
        history: deque[tuple[float, int]] = deque()
        while not self.stopping.wait(0.05):
            now, final = time.monotonic(), self.watcher.final - self.began
            history.append((now, final))
            while now - history[0][0] > 1.0:
                history.popleft()
            span = now - history[0][0]
            pace = float(self.in_flight)
            if final and span >= 0.5:
                pace = (final - history[0][1]) / span
            self._write(final + self.in_flight - self.owed, pace)

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


class Probe:
    """The benchmark's own statements on one connection: its backend is left
    out of the system's CPU, and its transactions out of the system's commits."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.conn = connect(settings, autocommit=True)
        self.statements = 0
        self.backend = int(self._rows("SELECT pg_backend_pid()")[0][0])

    def _rows(self, query: Any, params: Sequence[Any] = ()) -> list[Any]:
        self.statements += 1
        return self.conn.execute(query, params).fetchall()

    def confirmed(self) -> int:
        """Orders CONFIRMED (or later) in the read model."""
        rows = self._rows(
            sql.SQL(
                "SELECT count(*) FROM {} WHERE collection = 'orders'"
                " AND doc->>'status' IN ('CONFIRMED', 'SHIPPED', 'DELIVERED')"
            ).format(sql.Identifier(self.settings.postgres_schema, "order_details"))
        )
        return int(rows[0][0])

    def connections(self) -> int:
        rows = self._rows(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = %s",
            (self.settings.postgres_dbname,),
        )
        return int(rows[0][0])

    def counters(self) -> dict[str, int]:
        """Transactions committed in the run's database, and rows inserted or
        updated per table of its schema (PostgreSQL's statistics, which busy
        backends report every second)."""
        rows = self._rows(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = %s",
            (self.settings.postgres_dbname,),
        )
        counters = {"transactions": int(rows[0][0]) if rows else 0}
        # Transaction ids are given only to transactions that write: the
        # next one to be given counts the write transactions (of the whole
        # cluster) without taking one, where xact_commit also counts every
        # read-only poll.
        xids = self._rows("SELECT pg_snapshot_xmax(pg_current_snapshot())::text")
        counters["write transactions"] = int(xids[0][0])
        for table, written in self._rows(
            "SELECT relname, n_tup_ins + n_tup_upd FROM pg_stat_user_tables"
            " WHERE schemaname = %s",
            (self.settings.postgres_schema,),
        ):
            counters[table] = int(written)
        return counters

    def close(self) -> None:
        self.conn.close()


# --- the load ----------------------------------------------------------------


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
    """Wait until the server has ``needed`` connections free (it is shared,
    and may have none at all for a while); returns how many are free."""
    deadline = time.monotonic() + within
    while True:
        free = 0
        with (
            contextlib.suppress(InfrastructureUnavailable),
            connect(settings, dbname="postgres", autocommit=True) as conn,
        ):
            row = conn.execute(
                "SELECT current_setting('max_connections')::int - count(*)"
                " FROM pg_stat_activity"
            ).fetchone()
            free = int(row[0]) if row else 0
        if free >= needed or time.monotonic() > deadline:
            return free
        time.sleep(1)


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
                        *("--nonblocking", "--threads", "--format", "raw"),
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

SAGA_EVENTS = "orderprocess_events"


def per_order(
    before: Mapping[str, int], after: Mapping[str, int], orders: int, own: int
) -> dict[str, float]:
    """What each order cost between two :meth:`Probe.counters`, less ``own``
    transactions (the benchmark's watcher and probe), rounded."""
    delta = {k: v - before.get(k, 0) for k, v in after.items()}
    delta["transactions"] -= own
    return {
        k: round(v / max(orders, 1), 2)
        for k, v in sorted(delta.items(), key=lambda kv: -kv[1])
        if v >= orders / 2 and not k.startswith("plain_")
    }


@dataclass
class Phases:
    """What the load phases share: the run, the seeded customers and
    products, and the benchmark's own watchers."""

    run: Run
    base: str
    bare: str
    tokens: list[str]
    products: list[str]
    clients: int
    watcher: Watcher
    sampler: MetricsSampler
    probe: Probe
    own: Own

    def meter(self) -> CpuMeter:
        return CpuMeter(self.run.pids(), self.run.database, self.own)

    def orders(
        self, seconds: float, rate: float = 0.0, gate: Path | None = None
    ) -> Wrk:
        load = Wrk(
            self.base,
            "/orders",
            self.tokens,
            self.products,
            connections=self.paced(rate) if rate else self.gated(),
            seconds=seconds,
            rate=rate,
            gate=gate,
        )
        self.own.wrk = load.pid
        return load

    def sustained(self, seconds: float, profile: Path | None) -> dict[str, Any]:
        print(
            f"sustained: wrk, {self.gated()} connections, {self.clients} orders"
            f" in flight, {WARMUP:g}+{seconds:g} s ...",
            flush=True,
        )
        profiler = Profiler(profile, self.run.pids())
        gating = Path(tempfile.mkdtemp(prefix="ordersys-sysbench-gate-"))
        gate = Gate(gating / "gate", self.watcher, self.clients)
        gate.start()
        # wrk outlasts the window by a second: its CPU is read while it runs.
        load = self.orders(WARMUP + seconds + 1, gate=gate.path)
        profiler.start(WARMUP + seconds)
        try:
            time.sleep(WARMUP)
            watcher, probe = self.watcher, self.probe
            own = (watcher.polls, probe.statements)
            counters = [probe.counters()]
            messages = [rabbitmq_counters()]
            confirmed = [probe.confirmed()]
            backlog = [watcher.backlog()]
            meter = self.meter()
            meter.start()
            began = time.time()
            peak = 0
            while (left := began + seconds - time.time()) > 0:
                time.sleep(min(2.0, left))
                peak = max(peak, probe.connections())
            cpu = meter.stop()
            ended = time.time()
            confirmed.append(probe.confirmed())
            backlog.append(watcher.backlog())
            transactions = watcher.polls - own[0] + probe.statements - own[1]
            counters.append(probe.counters())
            messages.append(rabbitmq_counters())
            ack = load.result()
        finally:
            load.kill()
            gate.stop()
            shutil.rmtree(gating, ignore_errors=True)
            profiler.stop()
        window = ended - began
        orders = confirmed[1] - confirmed[0]
        rate = orders / window
        per = per_order(counters[0], counters[1], orders, transactions)
        print(f"  {rate:.1f} orders/s to CONFIRMED", flush=True)
        return {
            "in_flight": self.clients,
            "connections": self.gated(),
            "seconds": window,
            "orders_per_s": rate,
            "confirmed": orders,
            "placed": ack["answered_2xx"],
            "backlog": backlog,
            "ack": ack,
            "to_confirmed": summary(watcher.confirmed_between(began, ended)),
            "lag": summary(watcher.lags_between(began, ended)),
            "lag_events_p99": percentile(self.sampler.between(began, ended), 0.99),
            "lag_events_max": max(self.sampler.between(began, ended), default=0.0),
            "cpu_percent": cpu,
            "cpu_ms_per_order": meter.per_order(orders),
            "connections_peak": peak,
            "commits_per_order": per.get("transactions", float("nan")),
            "write_commits_per_order": per.get("write transactions", float("nan")),
            "saga_events_per_order": per.get(SAGA_EVENTS, float("nan")),
            "messages_per_order": {
                k: round((messages[1][k] - messages[0][k]) / max(orders, 1), 2)
                for k in messages[0].keys() & messages[1].keys()
            },
            "per_order": per,
        }

    def drain(self, within: float = 120.0) -> float:
        """Wait until every order placed is final in the read model, or none
        has become final for 5 s; how long that took."""
        began = last = time.monotonic()
        final = self.watcher.final
        while self.watcher.backlog() > 0 and time.monotonic() - began < within:
            time.sleep(0.1)
            if self.watcher.final != final:
                final, last = self.watcher.final, time.monotonic()
            elif time.monotonic() - last > 5:
                break
        return time.monotonic() - began

    def paced(self, rate: float) -> int:
        """Connections for ``rate``: enough for answers late by up to 2 s, each
        busy often enough to be kept alive (uvicorn closes idle ones after 5 s)."""
        return min(self.clients, max(8, math.ceil(rate / 2)))

    def gated(self) -> int:
        """Connections for the gated closed loop: fewer than the orders in
        flight, so that those waiting at the gate (a slot each) wait less
        than uvicorn keeps an idle connection alive, down to a few orders/s."""
        return max(8, self.clients // 2)

    def half_rate(self, seconds: float, rate: float) -> dict[str, Any]:
        print(f"half rate: {rate:.1f} orders/s, wrk paced, {seconds:g} s ...")
        load = self.orders(seconds + 1, rate)
        try:
            meter = self.meter()
            meter.start()
            began = time.time()
            time.sleep(seconds)
            cpu = meter.stop()
            ended = time.time()
            ack = load.result()
        finally:
            load.kill()
        drained = self.drain()
        watcher = self.watcher
        return {
            "offered_per_s": rate,
            "seconds": ended - began,
            "placed": ack["answered_2xx"],
            "ack": ack,
            "to_confirmed": summary(watcher.confirmed_between(began, time.time())),
            "lag": summary(watcher.lags_between(began, ended)),
            "lag_events_p99": percentile(self.sampler.between(began, ended), 0.99),
            "drained_seconds": drained,
            "cpu_percent": cpu,
        }

    def bare_half_rate(self, seconds: float, rate: float) -> dict[str, Any]:
        """The bare endpoint at the half-rate phase's rate, from the same wrk
        script: the baseline of the acknowledgement's latency."""
        print(f"bare endpoint at {rate:.1f}/s, wrk paced ...", flush=True)
        load = Wrk(
            self.bare,
            "/bare",
            self.tokens,
            self.products,
            connections=self.paced(rate),
            seconds=seconds,
            rate=rate,
        )
        try:
            return load.result()
        finally:
            load.kill()


def drive(
    run: Run,
    settings: Settings,
    base: str,
    bare: str,
    seconds: float,
    clients: int,
    profile: Path | None,
) -> dict[str, Any]:
    tokens, products = seed(run, base)
    probe = Probe(settings)
    watcher = Watcher(settings, tracking_table(settings))
    sampler = MetricsSampler(run.metrics_port)
    results: dict[str, Any] = {"connections_idle": probe.connections()}
    watcher.start()
    sampler.start()
    try:
        if not watcher.connected.wait(30):
            msg = "the watcher could not connect to PostgreSQL"
            raise RuntimeError(msg)
        own = Own(
            watcher_thread=watcher.native_id,
            watcher_backend=watcher.backend,
            probe_backend=probe.backend,
        )
        phases = Phases(
            run, base, bare, tokens, products, clients, watcher, sampler, probe, own
        )
        results["sustained"] = phases.sustained(seconds, profile)
        results["sustained"]["drained_seconds"] = phases.drain()
        half = max(results["sustained"]["orders_per_s"] / 2, 1.0)
        results["half_rate"] = phases.half_rate(seconds, half)
        results["half_rate"]["bare_ack"] = phases.bare_half_rate(seconds, half)
        results["watcher_polls"] = watcher.polls
    finally:
        sampler.stop()
        watcher.stop()
        probe.close()
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


OURS = (*SERVERS, GENERATOR, WATCHER, BENCH)


def others(cpu: Mapping[str, float]) -> float:
    """CPU the machine spent on work that is not this run's (other sessions)."""
    ours = sum(v for k, v in cpu.items() if k in SERVICES or k in OURS)
    return max(cpu[MACHINE] - ours, 0.0)


def report(results: dict[str, Any]) -> None:
    b, s, h, r = (
        results["baselines"],
        results["sustained"],
        results["half_rate"],
        results["rebuild"],
    )
    cpu_ms = s["cpu_ms_per_order"]
    system_ms = cpu_ms.get("system, in total", float("nan"))
    generator_ms = cpu_ms.get(GENERATOR, float("nan"))
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
        f"orders/s, POST to CONFIRMED ({s['in_flight']} in flight)",
        f"{s['orders_per_s']:.1f}",
        f"INSERT commits/s, 1 writer: {b['insert_1']:,.0f};"
        f" RPC round trips/s, 1 caller: {b['rpc_1']['rate']:,.0f}",
    )
    row("  PostgreSQL commits per confirmed order", f"{s['commits_per_order']:.1f}")
    row(
        "    of them write transactions (transaction ids given)",
        f"{s['write_commits_per_order']:.1f}",
        "the rest are read-only: the workers' polls",
    )
    row(
        f"  saga events per confirmed order ({SAGA_EVENTS})",
        f"{s['saga_events_per_order']:.1f}",
    )
    sent = s.get("messages_per_order", {})
    if sent:
        row(
            "  RabbitMQ messages per confirmed order, published",
            f"{sent['published']:.1f}",
            f"delivered to consumers: {sent['delivered']:.1f} (the broker's"
            " counters: other work on it counts too)",
        )
    row(
        "  CPU ms per confirmed order, the system",
        f"{system_ms:.2f}",
        "services, PostgreSQL, RabbitMQ, Redis (split below)",
    )
    row(
        "  CPU ms per confirmed order, load generator",
        f"{generator_ms:.3f}",
        f"wrk; the benchmark's watcher apart: {cpu_ms.get(WATCHER, 0.0):.3f}",
    )
    row("  POST ack at that load, p50 / p99 ms", ms(s["ack"]))
    row("  order placed to CONFIRMED, p50 / p99 ms", ms(s["to_confirmed"], 0))
    row("  read-model lag at that load, p50 / p99 ms", ms(s["lag"], 0))
    row(
        f"POST ack at half rate ({h['offered_per_s']:.1f}/s), p50 / p99 ms",
        ms(h["ack"]),
        f"bare uvicorn POST at the same rate: {ms(h['bare_ack'], 2)} ms",
    )
    row(
        "order placed to CONFIRMED (read model), p50 / p99 ms",
        ms(h["to_confirmed"], 0),
        f"one RPC round trip: {ms(b['rpc_1'], 2)} ms",
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
        "baseline: bare uvicorn POST req/s, wrk, 16",
        f"{b['bare_wrk']['rate']:,.0f}",
        f"p50 / p99 {ms(b['bare_wrk'], 2)} ms",
    )
    print(line)
    targets = [
        (">= 250 orders/s", s["orders_per_s"] >= 250),
        ("<= 10 commits/order", s["commits_per_order"] <= 10),
        ("<= 7 CPU ms/order", system_ms <= 7),
        ("generator < 1 CPU ms/order", generator_ms < 1),
        ("ack p99 < 50 ms at half rate", h["ack"]["p99_ms"] < 50),
        ("lag p99 < 250 ms at half rate", h["lag"]["p99_ms"] < 250),
        (">= 50,000 rebuild events/s", r["rebuild_per_s"] >= 50_000),
    ]
    print(
        "targets: " + "; ".join(f"{t} {'met' if ok else 'MISSED'}" for t, ok in targets)
    )
    for phase, figures in (("sustained", s), ("half rate", h)):
        cpu = figures["cpu_percent"]
        shares = sorted(
            ((k, v) for k, v in cpu.items() if k != MACHINE), key=lambda kv: -kv[1]
        )
        print(
            f"CPU, {phase} (% of one core): "
            + ", ".join(f"{k} {v:.0f}" for k, v in shares if v >= 1)
            + f"; machine {cpu[MACHINE]:.0f} of {CORES * 100},"
            f" of it other sessions' work about {others(cpu):.0f}"
        )
    print(
        "CPU ms per confirmed order, sustained: "
        + ", ".join(
            f"{k} {v:.2f}"
            for k, v in sorted(cpu_ms.items(), key=lambda kv: -kv[1])
            if v >= 0.005 and k != "postgres (other)"
        )
    )
    if s["per_order"]:
        print(
            "per order confirmed, sustained: PostgreSQL commits, and rows written"
            " by table: " + ", ".join(f"{k} {v:g}" for k, v in s["per_order"].items())
        )
    backlog = s["backlog"]
    print(
        f"backlog (orders placed, not final in the read model): {backlog[0]} at the"
        f" window's start, {backlog[1]} at its end; drained in"
        f" {s['drained_seconds']:.1f} s"
        + (
            " (the POSTs outran the pipeline: orders/s is its throughput"
            " under overload)"
            if backlog[1] > 1.5 * s["in_flight"] + 10
            else ""
        )
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
    errors = {
        phase: results[phase]["ack"]["errors"]
        for phase in ("sustained", "half_rate")
        if results[phase]["ack"]["errors"]
    }
    print(
        f"orders placed {s['placed']} + {h['placed']} (wrk's 2xx answers);"
        f" wrk errors: {errors or 'none'};"
        f" PostgreSQL connections idle {results['connections_idle']},"
        f" peak {s['connections_peak']}"
    )


def needs_wrk() -> str | None:
    """Why the benchmark cannot run, or None."""
    if shutil.which("wrk") is None:
        return (
            "python -m bench system needs wrk (its load generator): install it"
            " (apt-get install wrk) or run `make bench`, which does when it may."
            " A load generator in Python would measure its own limit."
        )
    return None


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench system")
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--baseline-seconds", type=float, default=3.0)
    parser.add_argument("--json", type=Path, default=ROOT / "bench/results/system.json")
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--pool-size", type=int, default=2)
    parser.add_argument("--rebuild-events", type=int, default=50_000)
    parser.add_argument("--replicas", type=int, default=1)
    args = parser.parse_args(argv)
    missing = needs_wrk()
    if missing:
        print(missing, file=sys.stderr)
        return 2

    if args.replicas < 1:
        print("python -m bench system: --replicas must be at least 1", file=sys.stderr)
        return 2
    try:
        return scaling(args) if args.replicas > 1 else measure(args)
    except (InfrastructureUnavailable, RuntimeError) as e:
        print(f"python -m bench system: {e}", file=sys.stderr)
        return 1


def measure(args: argparse.Namespace) -> int:
    run = Run(pool_size=args.pool_size)
    settings = run.settings()
    # The server is shared: wait for room before creating anything.
    wait_for_connections(settings, 40, 120)
    ensure_database(settings)
    with connect(settings, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(run.schema)))
    results: dict[str, Any] = {
        "machine": machine(),
        "revision": revision(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    bare_port = free_port()
    bare = f"http://127.0.0.1:{bare_port}"
    bare_process = serve_bare(bare_port)
    try:
        results["baselines"] = baselines(run, settings, bare, args.baseline_seconds)
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
            drive(run, settings, base, bare, args.seconds, args.clients, args.profile)
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


def scaling(args: argparse.Namespace) -> int:
    """Orders/s with one process of every service, then with
    ``args.replicas`` of each, in one run (the sustained phase alone, each on
    a system of its own): what adding processes does on this machine."""
    results: dict[str, Any] = {
        "machine": machine(),
        "revision": revision(),
        "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "replicas": {},
    }
    for replicas in (1, args.replicas):
        print(f"{replicas} process(es) of every service ...", flush=True)
        results["replicas"][replicas] = replicated(replicas, args)
        print(f"  {results['replicas'][replicas]['orders_per_s']:.1f} orders/s")
    report_scaling(results)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2, default=str))
    print(f"results: {args.json}")
    return 0


def replicated(replicas: int, args: argparse.Namespace) -> dict[str, Any]:
    """The sustained phase on a system with ``replicas`` processes of every
    service: one wrk per gateway, each gated to its share of the orders in
    flight."""
    run = Run(pool_size=args.pool_size, replicas=replicas)
    run.gateway_port = free_ports(replicas)
    settings = run.settings()
    wait_for_connections(settings, 40 * replicas, 120)
    ensure_database(settings)
    with connect(settings, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(run.schema)))
    loads: list[Wrk] = []
    gates: list[Gate] = []
    gating = Path(tempfile.mkdtemp(prefix="ordersys-sysbench-gate-"))
    try:
        run.start()
        bases = [f"http://127.0.0.1:{port}" for port in run.gateway_ports]
        for base in bases:
            wait_until_up(f"{base}/health/live")
        tokens, products = seed(run, bases[0])
        probe = Probe(settings)
        watcher = Watcher(settings, tracking_table(settings))
        watcher.start()
        if not watcher.connected.wait(30):
            msg = "the watcher could not connect to PostgreSQL"
            raise RuntimeError(msg)
        for n, base in enumerate(bases):
            gate = Gate(gating / f"gate{n}", watcher, args.clients, 1 / replicas)
            gate.start()
            gates.append(gate)
            connections = max(args.clients // 2 // replicas, 4)
            loads.append(
                Wrk(
                    *(base, "/orders", tokens, products),
                    connections=connections,
                    seconds=WARMUP + args.seconds + 1,
                    gate=gate.path,
                )
            )
        time.sleep(WARMUP)
        own = Own(watcher_thread=watcher.native_id, watcher_backend=watcher.backend)
        meter = CpuMeter(run.pids(), run.database, own)
        before = probe.confirmed()
        meter.start()
        time.sleep(args.seconds)
        cpu = meter.stop()
        confirmed = probe.confirmed() - before
        placed = sum(load.result()["answered_2xx"] for load in loads)
        watcher.stop()
        probe.close()
        return {
            "orders_per_s": confirmed / meter.elapsed,
            "confirmed": confirmed,
            "placed": placed,
            "cpu_percent": cpu,
            "cpu_ms_per_order": meter.per_order(confirmed),
        }
    finally:
        for load in loads:
            load.kill()
        for gate in gates:
            gate.stop()
        shutil.rmtree(gating, ignore_errors=True)
        run.stop()
        cleanup(run, settings)


def report_scaling(results: dict[str, Any]) -> None:
    by = results["replicas"]
    print(f"\nThe whole system, 1 and more processes per service: {results['machine']}")
    print("-" * 100)
    header = ("processes per service", "orders/s", "CPU ms/order", "machine CPU")
    print(f"{header[0]:>22} {header[1]:>10} {header[2]:>14} {header[3]:>12}")
    for replicas, figures in by.items():
        ms = figures["cpu_ms_per_order"].get("system, in total", float("nan"))
        machine_cpu = figures["cpu_percent"].get(MACHINE, 0.0)
        print(
            f"{replicas:>22} {figures['orders_per_s']:>10.1f} {ms:>14.2f}"
            f" {machine_cpu:>11.0f}%"
        )
    for replicas, figures in by.items():
        shares = sorted(figures["cpu_percent"].items(), key=lambda kv: -kv[1])
        split = ", ".join(f"{name} {share:.0f}" for name, share in shares if share >= 1)
        print(f"CPU with {replicas} per service (% of one core): {split}")


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
    # The run's database goes with everything in it; FORCE ends the
    # connections a stopped service may have left behind.
    with connect(settings, dbname="postgres", autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                sql.Identifier(run.database)
            )
        )
