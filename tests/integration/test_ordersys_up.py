"""`ordersys up` runs every service in a process of its own; `ordersys demo`
places orders through them; Ctrl-C stops everything, within 5 s, also under
load; a server that is not there at start-up is waited for, and one that does
not come is named in one line."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from ordersys.settings import Settings
from ordersys.shop.system import SHOP
from tests.conftest import TEST_DATABASE
from tests.integration.test_transport_rabbitmq import delete_topology
from tests.servers import PrivateRabbitMQ, free_port, free_ports

ROOT = Path(__file__).resolve().parents[2]
COMMAND = [sys.executable, "-m", "ordersys.shop.cli"]
STOP_WITHIN = 5.0


@pytest.fixture
def environment(pg_settings: Settings) -> Iterator[dict[str, str]]:
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    yield {
        **os.environ,
        "ORDERSYS_POSTGRES_DBNAME": TEST_DATABASE,
        "ORDERSYS_POSTGRES_SCHEMA": pg_settings.postgres_schema,
        "ORDERSYS_MESSAGING_PREFIX": prefix,
        "ORDERSYS_PAYMENT_DECLINE_RATE": "0.3",
        "ORDERSYS_GATEWAY_PORT": "0",
    }
    delete_topology(prefix)


Start = Callable[..., subprocess.Popen[str]]


@pytest.fixture
def start_up(environment: dict[str, str]) -> Iterator[Start]:
    """Starts `ordersys up` in a process group of its own (standard error into
    standard output); every group is killed afterwards."""
    started: list[subprocess.Popen[str]] = []

    def start(*args: str, **env: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [*COMMAND, "up", *args],
            cwd=ROOT,
            env={**environment, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if alive_in_group(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class Output:
    """The lines a process prints, read by one thread, waited for with a bound."""

    def __init__(self, process: subprocess.Popen[str]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, args=(process,), daemon=True).start()

    def _read(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def until(self, marker: str, within: float) -> list[str]:
        """The lines up to one containing ``marker`` (or to the end); fails,
        showing every line so far, if none comes for ``within`` seconds."""
        seen: list[str] = []
        try:
            while (line := self.lines.get(timeout=within)) is not None:
                seen.append(line)
                if marker in line:
                    break
        except queue.Empty:
            said = "".join(self.seen + seen)
            msg = f"no line for {within:g} s while waiting for {marker!r}:\n{said}"
            raise AssertionError(msg) from None
        self.seen += seen
        return seen

    def rest(self, within: float) -> list[str]:
        return self.until("\0", within)


def connections_by_process() -> dict[str, int]:
    """The test database's connections, by the application name libpq gave
    them (each service process names its own)."""
    with psycopg.connect(
        "host=127.0.0.1 user=postgres dbname=postgres", autocommit=True
    ) as conn:
        rows = conn.execute(
            "SELECT application_name, count(*) FROM pg_stat_activity "
            "WHERE datname = %s GROUP BY 1",
            (TEST_DATABASE,),
        ).fetchall()
    return {name: count for name, count in rows if name.split("#")[0] in SHOP.names}


def alive_in_group(pgid: int) -> list[int]:
    """The processes of group ``pgid`` that have not exited (zombies have)."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        state, group = fields[0], int(fields[2])
        if group == pgid and state != "Z":
            alive.append(int(stat.parent.name))
    return alive


def command_lines(pids: list[int]) -> list[str]:
    """What each of ``pids`` runs, for a failure message."""
    shown = []
    for pid in pids:
        try:
            raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        shown.append(" ".join(raw.decode().split("\0")[-3:]).strip())
    return shown


def exited_within(pgid: int, seconds: float) -> float | None:
    """Seconds until every process of the group exited, or None if some were
    still alive after ``seconds``."""
    began = time.monotonic()
    while alive_in_group(pgid):
        if time.monotonic() - began > seconds:
            return None
        time.sleep(0.02)
    return time.monotonic() - began


def api_of(output: Output) -> str:
    (banner,) = [line for line in output.until("API: ", within=10) if "API: " in line]
    found = re.search(r"http://[0-9.]+:(\d+)", banner)
    assert found is not None, banner
    assert found.group(1) != "0"
    return found.group(0)


@pytest.mark.timeout(600)
def test_up_then_demo_then_ctrl_c(start_up: Start, environment: dict[str, str]) -> None:
    up = start_up("--metrics-port", "0")
    output = Output(up)
    started = output.until("all services ready", within=300)
    demo = subprocess.run(
        [*COMMAND, "demo", "--orders", "8"],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    up.send_signal(signal.SIGINT)
    stopped = output.until("all services stopped", within=60)
    up.wait(timeout=30)

    assert started[-1] == f"all services ready: {', '.join(SHOP.names)}\n"
    assert sum(" ready, serving " in line for line in started) == len(SHOP.names)
    assert demo.returncode == 0, demo.stderr
    *_, summary, figures = demo.stdout.strip().splitlines()
    assert summary.startswith("8 orders: ")
    assert figures.startswith("notifications sent to the customer: 8; analytics: ")
    assert up.returncode == 0
    assert stopped[-1] == "all services stopped\n"


def idle_keep_alive(api: str) -> socket.socket:
    """A connection that made one request and stays open, idle."""
    host, port = api.removeprefix("http://").split(":")
    connection = socket.create_connection((host, int(port)), timeout=10)
    connection.sendall(
        b"GET /health/live HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n"
    )
    assert connection.recv(65536).startswith(b"HTTP/1.1 200")
    return connection


class Load:
    """Clients asking for products over keep-alive connections until stopped."""

    def __init__(self, api: str, clients: int) -> None:
        self.api = api
        self.answered = 0
        self.stopping = threading.Event()
        self.threads = [
            threading.Thread(target=self._ask, daemon=True) for _ in range(clients)
        ]
        for thread in self.threads:
            thread.start()

    def _ask(self) -> None:
        with httpx.Client(base_url=self.api, timeout=10) as client:
            while not self.stopping.is_set():
                try:
                    client.get("/products")
                except httpx.HTTPError:
                    return  # the gateway is stopping
                self.answered += 1

    def wait_for(self, answers: int, within: float) -> None:
        deadline = time.monotonic() + within
        while self.answered < answers and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(15)


@pytest.mark.timeout(600)  # seven processes start on a machine that may be busy
def test_ctrl_c_under_load_with_idle_keep_alive_connections_stops_everything(
    start_up: Start,
) -> None:
    up = start_up("--metrics-port", "0")
    output = Output(up)
    output.until("all services ready", within=300)
    api = api_of(output)
    idle = [idle_keep_alive(api) for _ in range(20)]
    load = Load(api, clients=4)
    load.wait_for(answers=50, within=30)

    os.killpg(up.pid, signal.SIGINT)  # what Ctrl-C sends
    took = exited_within(up.pid, STOP_WITHIN)
    left = command_lines(alive_in_group(up.pid))
    load.stop()
    for connection in idle:
        connection.close()
    up.wait(timeout=10)
    said = "".join(output.rest(within=10))
    print(said)

    shown = "not within" if took is None else f"{took:.2f} s"
    print(
        f"every process exited {shown} after SIGINT, with {load.answered} "
        f"requests answered and {len(idle)} idle keep-alive connections open"
    )
    assert took is not None, f"still alive after {STOP_WITHIN} s: {left}"
    assert load.answered >= 50
    assert up.returncode == 0
    assert "Traceback" not in said


UNREACHABLE = {
    "RabbitMQ": lambda port: {
        "ORDERSYS_RABBITMQ_URL": f"amqp://guest:guest@127.0.0.1:{port}//"
    },
    "PostgreSQL": lambda port: {"ORDERSYS_POSTGRES_PORT": str(port)},
}


@pytest.mark.timeout(600)
@pytest.mark.parametrize("server", sorted(UNREACHABLE))
def test_a_server_that_is_not_there_is_waited_for_then_named_in_one_line(
    start_up: Start, server: str
) -> None:
    port = free_port()  # nothing listens there
    up = start_up(
        "--metrics-port", "0", ORDERSYS_STARTUP_TIMEOUT="4", **UNREACHABLE[server](port)
    )
    output, _ = up.communicate(timeout=300)

    address = f"127.0.0.1:{port}"
    lines = output.splitlines()
    print(output)
    assert lines.count(f"waiting for {server} at {address}") == 1
    (gave_up,) = [line for line in lines if line.startswith("ordersys: error:")]
    assert gave_up.startswith(
        f"ordersys: error: gave up waiting for {server} at {address} after 4 s"
    )
    assert up.returncode == 1
    assert "Traceback" not in output


@pytest.fixture
def rabbitmq() -> Iterator[PrivateRabbitMQ]:
    """A RabbitMQ node of the test's own, not started yet; removed afterwards
    (with every queue and exchange the system declared on it)."""
    node = PrivateRabbitMQ()
    yield node
    node.close()


@pytest.mark.timeout(900)
def test_rabbitmq_down_for_the_first_20_s_then_up_lets_every_service_start(
    start_up: Start, rabbitmq: PrivateRabbitMQ
) -> None:
    up = start_up(
        "--metrics-port",
        "0",
        ORDERSYS_RABBITMQ_URL=rabbitmq.url,
        ORDERSYS_STARTUP_TIMEOUT="120",
    )
    output = Output(up)
    waiting = output.until("waiting for RabbitMQ", within=60)
    time.sleep(20)
    rabbitmq.start()
    started = output.until("all services ready", within=300)
    os.killpg(up.pid, signal.SIGINT)
    stopped = output.rest(within=30)
    up.wait(timeout=30)

    seen = "".join(waiting + started + stopped)
    print(seen)
    assert seen.count(f"waiting for RabbitMQ at 127.0.0.1:{rabbitmq.port}\n") == 1
    assert started[-1] == f"all services ready: {', '.join(SHOP.names)}\n"
    assert sum(" ready, serving " in line for line in started) == len(SHOP.names)
    assert "Traceback" not in seen
    assert up.returncode == 0


REPLICATED = {"orders": 2, "catalog": 2, "gateway": 2}
STRIDE = 10  # replica n of a service: its first replica's metrics port + 10 (n - 1)


def json_lines(output: str) -> list[dict[str, Any]]:
    """The log lines among ``output`` (JSON, since it is not a terminal)."""
    found = []
    for line in output.splitlines():
        if line.startswith("{"):
            with contextlib.suppress(ValueError):
                found.append(json.loads(line))
    return found


def metrics_answer(port: int) -> bool:
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    except httpx.HTTPError:
        return False
    return response.status_code == 200 and "process_cpu_seconds_total" in response.text


def a_token_from_one_gateway_works_on_the_other(apis: list[str]) -> bool:
    """Register and log in on the first gateway, ask the second who that is."""
    email = f"replica-{uuid.uuid4().hex[:8]}@example.com"
    password = "correct horse battery"
    with httpx.Client(base_url=apis[0], timeout=30) as first:
        registered = first.post(
            "/auth/register",
            json={"email": email, "name": "Ann", "password": password},
        )
        assert registered.status_code == 201, registered.text
        login = first.post("/auth/login", json={"email": email, "password": password})
        assert login.status_code == 200, login.text
    token = login.json()["access_token"]
    me = httpx.get(
        f"{apis[1]}/users/me",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )
    return me.status_code == 200 and me.json()["email"] == email


@pytest.mark.timeout(900)  # ten processes start on a machine that may be busy
def test_replicas_run_as_processes_of_their_own_and_share_the_orders(
    start_up: Start,
) -> None:
    # Given a first metrics port with room for the second replicas (10 above)
    first = free_ports(len(SHOP.names) + STRIDE)
    places = {name: n for n, name in enumerate(SHOP.names)}
    # When `ordersys up` runs two of orders, catalog and the gateway, and
    # places five orders once they are ready
    up = start_up(
        "--replicas",
        ",".join(f"{name}={n}" for name, n in REPLICATED.items()),
        "--metrics-port",
        str(first),
        "--demo",
        "5",
    )
    output = Output(up)
    started = output.until("all services ready", within=600)
    banner = output.until("Ctrl-C stops everything", within=30)
    running = command_lines(alive_in_group(up.pid))
    held = connections_by_process()
    (api_line,) = [line for line in banner if line.startswith("API: ")]
    apis = re.findall(r"http://[0-9.]+:\d+", api_line)
    metrics = {  # in the order they start, as the banner names them
        f"{name}#{n}": first + places[name] + STRIDE * (n - 1)
        for name in ("catalog", "orders")
        for n in (1, 2)
    }
    answering = {name: metrics_answer(port) for name, port in metrics.items()}
    shared_key = a_token_from_one_gateway_works_on_the_other(apis)
    demo = output.until("notifications sent to the customer", within=300)
    os.killpg(up.pid, signal.SIGINT)  # what Ctrl-C sends
    took = exited_within(up.pid, STOP_WITHIN)
    left = command_lines(alive_in_group(up.pid))
    up.wait(timeout=30)
    said = "".join(started + banner + demo + output.rest(within=10))
    print(said)
    print(f"every process exited {took} s after SIGINT")
    print(f"PostgreSQL connections, by process: {held}")

    # Then each replica is a process of its own, with a name of its own ...
    for name, count in REPLICATED.items():
        assert running.count(f"run {name}") == count, running
        for n in range(1, count + 1):
            assert f"[{name}#{n}] {name}#{n} ready, serving " in "".join(started)
    for name in set(SHOP.names) - set(REPLICATED):
        assert running.count(f"run {name}") == 1, running
        assert f"[{name}] {name} ready, serving " in "".join(started)
    logged_as = {log["service"] for log in json_lines(said) if "service" in log}
    assert {"orders#1", "orders#2", "catalog#1", "catalog#2", "payments"} <= logged_as
    assert started[-1] == (
        "all services ready: notifications, analytics, users, catalog (2), "
        "payments, orders (2), gateway (2)\n"
    )
    # ... its own metrics port, said in the banner, that answers ...
    expected = ", ".join(f"{name} {port}" for name, port in metrics.items())
    assert f"metrics of the replicas: {expected}\n" in banner
    assert answering == dict.fromkeys(metrics, True)
    # ... its own PostgreSQL connections, named after it, few enough that the
    # server's 100 leave room for more replicas and for other work ...
    assert {"orders#1", "orders#2", "catalog#1", "catalog#2", "payments"} <= set(held)
    assert sum(held.values()) <= 50, held
    # ... and the two gateways, on ports of their own, accept each other's tokens
    assert len(set(apis)) == 2, banner
    assert shared_key
    # and the demo's orders all end, each told once
    assert any(line.startswith("5 orders: ") for line in demo), demo
    assert demo[-1].startswith("notifications sent to the customer: 5; analytics: ")
    # and Ctrl-C stops every process in time
    assert took is not None, f"still alive after {STOP_WITHIN} s: {left}"
    assert up.returncode == 0
    assert "Traceback" not in said
