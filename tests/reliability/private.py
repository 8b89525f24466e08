"""The whole system on private servers: a PostgreSQL cluster, a RabbitMQ node
and a Redis of its own (tests/servers.py), which a test may stop, kill and
start again without touching the machine's servers or other tests."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from amqp.exceptions import NotFound
from kombu import Connection

from ordersys import InfrastructureUnavailable, RequestTimeout
from ordersys.messaging.consumer import registered_queues
from ordersys.shop.services import SERVICES
from ordersys.shop.settings import ShopSettings, load_shop_settings
from ordersys.transport.rabbitmq import KombuTransport
from tests.reliability.load import Load
from tests.servers import PrivatePostgres, PrivateRabbitMQ, PrivateRedis
from tests.system.system import FINAL, System

SECRET = "the reliability suite's gateway key, long enough for HS256"
PREFIX = "ordersys"


class Servers:
    """One private instance of each server the system needs."""

    def __init__(self) -> None:
        self.postgres = PrivatePostgres()
        self.rabbitmq = PrivateRabbitMQ()
        self.redis = PrivateRedis()

    def start(self) -> None:
        """Start all three at once (RabbitMQ takes seconds to boot)."""
        starts = [
            threading.Thread(target=server.start)
            for server in (self.postgres, self.rabbitmq, self.redis)
        ]
        for start in starts:
            start.start()
        for start in starts:
            start.join()

    def overrides(self) -> dict[str, Any]:
        return {
            **self.postgres.settings,
            **self.rabbitmq.settings,
            **self.redis.settings,
            "postgres_dbname": "ordersys",
            "messaging_prefix": PREFIX,
        }

    def settings(self) -> ShopSettings:
        return load_shop_settings(self.overrides())

    def env(self) -> dict[str, str]:
        """The environment of a service run against these servers."""
        return {
            **os.environ,
            **{f"ORDERSYS_{k.upper()}": str(v) for k, v in self.overrides().items()},
            "ORDERSYS_POSTGRES_SCHEMA": "",  # each service its schemas, as deployed
            "ORDERSYS_CACHE_PREFIX": PREFIX,
            "ORDERSYS_JWT_SECRET": SECRET,
            "ORDERSYS_RATE_LIMIT_PER_MINUTE": "1000000",
            "ORDERSYS_RPC_TIMEOUT": "5",
            "ORDERSYS_SAGA_STEP_TIMEOUT": "20",
            "ORDERSYS_STARTUP_TIMEOUT": "120",
            "ORDERSYS_LOG_LEVEL": "WARNING",
        }

    def queues(self) -> dict[str, int]:
        """Messages in each of the system's queues and dead-letter queues: the
        services' request queues and the consumers' queues they registered."""
        names = [f"{PREFIX}.{name}.commands" for name in SERVICES]
        names += registered_queues(self.settings())
        depths = {}
        with Connection(self.rabbitmq.url, connect_timeout=5) as connection:
            for name in [q for n in names for q in (n, f"{n}.dlq")]:
                channel = connection.channel()
                try:
                    depths[name] = channel.queue_declare(name, passive=True)[1]
                except NotFound:
                    continue  # a service that serves no requests (the gateway)
                channel.close()
        return depths

    def dead_letters_by_queue(self) -> dict[str, int]:
        """The dead-letter queues that are not empty, and how many they hold."""
        return {q: n for q, n in self.queues().items() if n and q.endswith(".dlq")}

    def dead_letters(self) -> int:
        """Messages in every dead-letter queue of the system."""
        return sum(self.dead_letters_by_queue().values())

    def stuck(self) -> dict[str, int]:
        """Messages left in any queue but the dead-letter queues."""
        return {q: n for q, n in self.queues().items() if n and not q.endswith(".dlq")}

    def close(self) -> None:
        for server in (self.redis, self.rabbitmq, self.postgres):
            server.close()


def system_on(servers: Servers, log: Path) -> System:
    """The system (each service a process of its own) on ``servers``, and a
    client of its own on their broker."""
    system = System(servers.env(), log)
    system.client.close()
    system.client = KombuTransport(servers.rabbitmq.url, prefix=PREFIX)
    return system


def freeze(system: System, name: str, seconds: float) -> None:
    """SIGSTOP the service for ``seconds``, then SIGCONT."""
    group = system.processes[name].process.pid  # its own session and group
    os.killpg(group, signal.SIGSTOP)
    time.sleep(seconds)
    os.killpg(group, signal.SIGCONT)


def is_final(system: System, order_id: str) -> dict[str, Any] | None:
    try:
        order: dict[str, Any] | None = system.find(
            "orders", "order.get", order_id=order_id
        )
    except (InfrastructureUnavailable, RequestTimeout):
        return None
    return order if order and order["status"] in FINAL else None


def settled(
    system: System, order_ids: list[str], within: float
) -> dict[str, dict[str, Any]]:
    """The orders that are final, waiting up to ``within`` seconds in all."""
    deadline = time.monotonic() + within
    final: dict[str, dict[str, Any]] = {}
    for order_id in order_ids:
        while (order := is_final(system, order_id)) is None:
            if time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if order is not None:
            final[order_id] = order
    return final


@dataclass
class Fault:
    """A fault injected while orders flow, and how the system came through."""

    name: str
    began: float
    recovery: float = 0.0
    """Seconds from the fault's end until an order placed after it was final."""
    orders: list[str] = field(default_factory=list)
    lost: int = 0
    doubled: int = 0
    dead_letters: int = 0

    def line(self) -> str:
        return (
            f"{self.name}: {len(self.orders)} orders accepted, {self.lost} lost, "
            f"{self.doubled} effects doubled, {self.dead_letters} dead letters, "
            f"recovered in {self.recovery:.1f}s"
        )


def ride_out(
    name: str, inject: Callable[[], None], system: System, load: Load
) -> Fault:
    """Inject the fault (``inject`` returns once it is over), then wait until an
    order accepted after it is final: the system recovered by itself."""
    fault = Fault(name, time.monotonic())
    inject()
    fault.recovery = recovery_since(time.monotonic(), system, load, name)
    return fault


def recovery_since(over: float, system: System, load: Load, name: str) -> float:
    """Seconds from ``over`` until an order accepted after it is final."""
    deadline = over + 180
    while not any(is_final(system, o) for o in load.accepted_since(over)[:3]):
        if time.monotonic() > deadline:
            msg = f"{name}: no order placed after the fault was final within 180s"
            raise AssertionError(msg)
        time.sleep(0.2)
    return time.monotonic() - over
