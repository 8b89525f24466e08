"""The bundled system as its users run it: every service a process of its own
(`ordersys run <name>`), on the real PostgreSQL, RabbitMQ and Redis, with a
client that talks to them over RabbitMQ."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from ordersys import InfrastructureUnavailable, NotFound, RequestTimeout
from ordersys.shop.services import SERVICES
from ordersys.transport import Envelope
from ordersys.transport.rabbitmq import KombuTransport

ROOT = Path(__file__).resolve().parents[2]
URL = "amqp://guest:guest@127.0.0.1:5672//"
FINAL = ("CONFIRMED", "CANCELLED")
T = TypeVar("T")


def eventually(check: Callable[[], T | None], within: float = 60.0) -> T:
    """The first truthy result of ``check``, polled; fails after ``within`` s."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            msg = f"not true within {within}s: last result {result!r}"
            raise AssertionError(msg)
        time.sleep(0.1)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class ServiceProcess:
    """One `ordersys run <name>`, its output echoed to a log file; ``label``
    names a replica (``orders#2``) in that log."""

    def __init__(
        self, name: str, env: Mapping[str, str], log: Path, label: str = ""
    ) -> None:
        self.name = name
        self.label = label or name
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
            self.log.write(f"[{self.label}] {line}")
            self.log.flush()
            if line.startswith((f"{self.label} ready", f"{self.name} ready")):
                self.ready.set()

    def wait_ready(self, within: float = 60.0) -> None:
        deadline = time.monotonic() + within
        while not self.ready.wait(0.1):
            if self.process.poll() is not None or time.monotonic() > deadline:
                msg = f"{self.label} did not start (exit code {self.process.poll()})"
                raise AssertionError(msg)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait()

    def stop(self) -> None:
        self.terminate()
        self.wait_stopped(time.monotonic() + 20)

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def wait_stopped(self, deadline: float) -> None:
        """Wait until the process has exited, killing it at ``deadline``."""
        try:
            self.process.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            self.kill()
        self.log.close()


class System:
    """The services, started and restarted one by one, and a client."""

    def __init__(self, env: Mapping[str, str], log: Path) -> None:
        self.env = dict(env)
        self.log = log
        self.processes: dict[str, ServiceProcess] = {}
        self.metrics_ports: dict[str, int] = {}
        self.gateway_port = 0
        self.gateway_ports: dict[str, int] = {}
        """Each gateway replica's port, by its name."""
        self.client = KombuTransport(URL, prefix=env["ORDERSYS_MESSAGING_PREFIX"])

    def start(
        self,
        names: Iterable[str] = SERVICES,
        *,
        metrics: bool = False,
        **settings: str,
    ) -> None:
        """Start ``names`` (in the order ``ordersys up`` does), with extra
        ``ORDERSYS_*`` settings, and wait until each is ready. A name may be a
        replica's, ``orders#2``: another process of that service. With
        ``metrics`` each serves /metrics on a free port (``metrics_ports``)."""
        env = {**self.env, **{f"ORDERSYS_{k.upper()}": v for k, v in settings.items()}}
        started = []
        for name in names:
            service = name.split("#", 1)[0]
            if service == "gateway":  # its /metrics is on its HTTP port
                self.gateway_port = self.gateway_ports[name] = free_port()
                env = {**env, "ORDERSYS_GATEWAY_PORT": str(self.gateway_port)}
                if metrics:
                    self.metrics_ports[name] = self.gateway_port
            elif metrics:
                self.metrics_ports[name] = free_port()
                env = {**env, "ORDERSYS_METRICS_PORT": str(self.metrics_ports[name])}
            replica = {"ORDERSYS_REPLICA": name.split("#")[1]} if "#" in name else {}
            started.append(ServiceProcess(service, {**env, **replica}, self.log, name))
        for process in started:
            process.wait_ready()
            self.processes[process.label] = process

    @staticmethod
    def names() -> list[str]:
        return list(SERVICES)

    def configure(self, **settings: str) -> None:
        """Settings every service started from now on gets."""
        self.env.update({f"ORDERSYS_{k.upper()}": v for k, v in settings.items()})

    def crash_and_restart(self, name: str) -> None:
        """kill -9 the service, then start it again."""
        self.processes.pop(name).kill()
        self.start([name])

    def restart(self, name: str) -> None:
        self.processes.pop(name).stop()
        self.start([name])

    def kill(self, name: str) -> None:
        self.processes[name].kill()

    def died(self, name: str) -> bool:
        return self.processes[name].process.poll() is not None

    def stop(self) -> None:
        """Stop every service at once: each has what it needs to stop cleanly
        (its own connections), so there is nothing to wait for in between."""
        self.client.close()
        for process in self.processes.values():
            process.terminate()
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            process.wait_stopped(deadline)

    def call(self, service: str, message_type: str, **body: Any) -> Any:
        envelope = Envelope.new(message_type, body)
        return self.client.call(service, envelope, timeout=15)

    def find(self, service: str, message_type: str, **body: Any) -> Any:
        """The query's answer, or None if it answers NotFound."""
        try:
            return self.call(service, message_type, **body)
        except NotFound:
            return None

    def product(self, stock: int, price_cents: int = 1000) -> str:
        sku = f"SKU-{os.urandom(4).hex().upper()}"
        created = self.call(
            "catalog",
            "product.create",
            sku=sku,
            name=f"product {sku}",
            price_cents=price_cents,
            stock=stock,
        )
        return str(created["product_id"])

    def customer(self) -> str:
        email = f"c-{os.urandom(4).hex()}@example.com"
        written = self.call(
            "users", "user.create", email=email, name="A Customer", password="s3cret-pw"
        )
        return str(written["aggregate_id"])

    def place(self, customer: str, product: str, quantity: int = 1) -> str:
        written = self.call(
            "orders",
            "order.create",
            customer_id=customer,
            lines=[
                {"product_id": product, "quantity": quantity, "unit_price_cents": 1000}
            ],
            submit=True,
        )
        return str(written["aggregate_id"])

    def final(
        self, order_ids: Iterable[str], within: float = 90.0
    ) -> list[dict[str, Any]]:
        """Every order, once each is CONFIRMED or CANCELLED in the read model."""
        orders = []
        for order_id in order_ids:

            def done(order_id: str = order_id) -> dict[str, Any] | None:
                try:
                    order: dict[str, Any] | None = self.find(
                        "orders", "order.get", order_id=order_id
                    )
                except (InfrastructureUnavailable, RequestTimeout):
                    return None  # the broker or the service is coming back
                return order if order and order["status"] in FINAL else None

            orders.append(eventually(done, within))
        return orders
