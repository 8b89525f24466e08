"""Removing what a system left on the servers: the RabbitMQ queues and
exchanges of its messaging prefix, and its PostgreSQL schemas.

The broker is asked for its queues and exchanges with ``rabbitmqctl`` (AMQP
cannot list them), so this runs where the broker's command-line tools can
reach it.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass

from ordersys.errors import InfrastructureUnavailable
from ordersys.settings import Settings, address_of


@dataclass(frozen=True)
class BrokerObjects:
    """The queues and exchanges named with one prefix."""

    queues: list[str]
    exchanges: list[str]


def _listed(what: str, address: str) -> list[str]:
    if shutil.which("rabbitmqctl") is None:
        reason = "rabbitmqctl (which lists queues and exchanges) is not installed"
        raise InfrastructureUnavailable("RabbitMQ", address, reason)
    listed = subprocess.run(
        ["rabbitmqctl", "-q", f"list_{what}", "name"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if listed.returncode != 0:
        said = listed.stderr.strip().splitlines()
        raise InfrastructureUnavailable(
            "RabbitMQ", address, said[-1] if said else "rabbitmqctl failed"
        )
    return listed.stdout.split()


def broker_objects(settings: Settings, prefix: str) -> BrokerObjects:
    """The queues and exchanges whose names start with ``<prefix>.``."""
    address = address_of(settings.rabbitmq_url)

    def mine(names: list[str]) -> list[str]:
        return sorted(n for n in names if n.startswith(f"{prefix}."))

    return BrokerObjects(
        queues=mine(_listed("queues", address)),
        exchanges=mine(_listed("exchanges", address)),
    )


def delete_broker_objects(settings: Settings, objects: BrokerObjects) -> None:
    """Delete ``objects`` (with whatever messages their queues hold)."""
    from kombu.connection import Connection

    address = address_of(settings.rabbitmq_url)
    url = settings.rabbitmq_url
    with Connection(url, connect_timeout=5) as connection:  # type: ignore[no-untyped-call]
        try:
            connection.ensure_connection(max_retries=1)
        except Exception as e:
            raise InfrastructureUnavailable("RabbitMQ", address, str(e)) from None
        channel = connection.channel()
        for queue in objects.queues:
            channel.queue_delete(queue)
        for exchange in objects.exchanges:
            channel.exchange_delete(exchange)


def existing_schemas(settings: Settings, names: Iterable[str]) -> list[str]:
    """Those of ``names`` that are schemas of the configured database."""
    from ordersys.persistence.database import connect

    with connect(settings) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)",
            (sorted(set(names)),),
        ).fetchall()
    return sorted(row[0] for row in rows)


def drop_schemas(settings: Settings, schemas: Iterable[str]) -> None:
    """Drop ``schemas`` and everything in them."""
    from psycopg import sql

    from ordersys.persistence.database import connect

    with connect(settings, autocommit=True) as conn:
        for schema in schemas:
            conn.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                    sql.Identifier(schema)
                )
            )
