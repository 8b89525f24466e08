"""``ordersys teardown``: remove what the bundled system left on the servers:
its messaging prefix's queues and exchanges, and its PostgreSQL schemas.

The schemas are the ones the services' compositions use (each application's,
read model's and consumer's), found by composing them over the in-process
transport; run it with the system stopped.
"""

from __future__ import annotations

from typing import Annotated

import typer

from ordersys.messaging.consumer import EventConsumer
from ordersys.projections import ProjectionRunner
from ordersys.readmodels.postgres import PostgresReadModelStore
from ordersys.service import Service
from ordersys.shop.settings import ShopSettings, load_shop_settings
from ordersys.shop.system import SHOP
from ordersys.teardown import (
    broker_objects,
    delete_broker_objects,
    drop_schemas,
    existing_schemas,
)
from ordersys.terminal import confirmed, console
from ordersys.transport.memory import MemoryTransport

CONSUMER_REGISTRY = "ordersys_consumers"


def _schemas_of(service: Service) -> set[str]:
    schemas = {
        a.env["POSTGRES_SCHEMA"]
        for a in service.applications
        if "POSTGRES_SCHEMA" in a.env
    }
    for worker in service.workers:
        if isinstance(worker, EventConsumer):
            schemas.add(worker.schema)
        if isinstance(worker, ProjectionRunner) and isinstance(
            worker.store, PostgresReadModelStore
        ):
            schemas.add(worker.store.datastore.schema)
    return schemas


def system_schemas(settings: ShopSettings) -> set[str]:
    """The schemas the services use under ``settings``."""
    if settings.persistence != "postgres":
        return set()
    if settings.postgres_schema:
        return {settings.postgres_schema}
    schemas = {CONSUMER_REGISTRY}
    # One connection per pool: every service is composed here at once.
    settings = settings.model_copy(
        update={"postgres_pool_size": 1, "postgres_max_overflow": 1}
    )
    for name in SHOP.names:
        if name == "gateway":  # it stores nothing in PostgreSQL
            continue
        service = SHOP.service(name, settings, MemoryTransport())
        schemas |= _schemas_of(service)
        for application in service.applications:
            application.close()
    return schemas


def teardown(
    yes: Annotated[bool, typer.Option("--yes", help="Do not ask.")] = False,
) -> int:
    """Delete the prefix's queues and exchanges and the system's schemas."""
    settings = load_shop_settings()
    prefix = settings.messaging_prefix
    objects = broker_objects(settings, prefix)
    schemas = existing_schemas(settings, system_schemas(settings))
    console.print(
        f"RabbitMQ, prefix {prefix}: {len(objects.queues)} queues, "
        f"{len(objects.exchanges)} exchanges",
        markup=False,
    )
    console.print(
        f"PostgreSQL {settings.postgres_address}/{settings.postgres_dbname}: "
        f"schemas {', '.join(schemas) or '(none)'}",
        markup=False,
    )
    if not (objects.queues or objects.exchanges or schemas):
        console.print("nothing to remove")
        return 0
    if not confirmed("Delete them, with every message and event in them?", yes=yes):
        console.print("nothing removed")
        return 1
    delete_broker_objects(settings, objects)
    drop_schemas(settings, schemas)
    console.print(
        f"removed {len(objects.queues)} queues, {len(objects.exchanges)} exchanges "
        f"and {len(schemas)} schemas",
        markup=False,
    )
    return 0
