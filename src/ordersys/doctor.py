"""Checks that the configured PostgreSQL, RabbitMQ and Redis can be reached.

Each probe imports its server's client when it runs: a server whose extra is
not installed is reported as such, beside the others.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ordersys.errors import InfrastructureUnavailable
from ordersys.extras import MissingExtra, needs
from ordersys.persistence.database import connect
from ordersys.settings import Settings, address_of


@dataclass(frozen=True)
class Check:
    """The outcome of probing one server."""

    server: str
    address: str
    ok: bool
    detail: str


def postgres_version(settings: Settings) -> str:
    with connect(settings, dbname="postgres") as conn:
        row = conn.execute("SHOW server_version").fetchone()
    return f"PostgreSQL {row[0] if row else 'unknown'}"


def rabbitmq_version(settings: Settings) -> str:
    with needs("rabbitmq", "Checking RabbitMQ"):
        from kombu.connection import Connection
    address = address_of(settings.rabbitmq_url)
    try:
        with Connection(settings.rabbitmq_url, connect_timeout=3) as conn:
            # One attempt, at once: a refused connection is an answer.
            conn.ensure_connection(max_retries=1, interval_start=0)
            properties = conn.connection.server_properties
    except Exception as e:
        raise InfrastructureUnavailable(
            "RabbitMQ", address, str(e) or repr(e)
        ) from None
    product = properties.get("product", "RabbitMQ")
    return f"{product} {properties.get('version', 'unknown')}"


def redis_version(settings: Settings) -> str:
    with needs("redis", "Checking Redis"):
        import redis
    address = address_of(settings.redis_url)
    try:
        client = redis.Redis.from_url(settings.redis_url, socket_connect_timeout=3)
        with client:
            info = client.info("server")
    except redis.RedisError as e:
        raise InfrastructureUnavailable("Redis", address, str(e)) from None
    return f"Redis {info.get('redis_version', 'unknown')}"


PROBES: dict[str, tuple[Callable[[Settings], str], Callable[[Settings], str]]] = {
    "PostgreSQL": (postgres_version, lambda s: s.postgres_address),
    "RabbitMQ": (rabbitmq_version, lambda s: address_of(s.rabbitmq_url)),
    "Redis": (redis_version, lambda s: address_of(s.redis_url)),
}


def run_checks(settings: Settings) -> list[Check]:
    """Probe every server; never raises for an unreachable one."""
    checks = []
    for server, (probe, address) in PROBES.items():
        try:
            checks.append(Check(server, address(settings), True, probe(settings)))
        except InfrastructureUnavailable as e:
            checks.append(Check(server, e.address, False, e.reason))
        except MissingExtra as e:
            checks.append(Check(server, address(settings), False, e.message))
    return checks
