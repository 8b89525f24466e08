"""Connecting to PostgreSQL, and creating the database and schemas ordersys uses.

psycopg (the ``[postgres]`` extra) is imported by the functions that connect,
so that schema names are at hand without it (SQLite uses them too).
"""

from __future__ import annotations

import contextlib
import re
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from ordersys.errors import InfrastructureUnavailable
from ordersys.extras import needs
from ordersys.persistence.owners import OWNERS_TABLE
from ordersys.settings import Settings

if TYPE_CHECKING:
    import psycopg

_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


def schema_name(name: str) -> str:
    """The schema for a service or application named ``name`` (lower snake case)."""
    schema = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower().replace("-", "_")
    if not _IDENTIFIER.match(schema):
        msg = f"{name!r} does not make a valid PostgreSQL schema name"
        raise ValueError(msg)
    return schema


def connect(
    settings: Settings, dbname: str | None = None, **kwargs: Any
) -> psycopg.Connection[Any]:
    """Open a connection, or raise :class:`InfrastructureUnavailable` naming the
    server and its address; :class:`~ordersys.extras.MissingExtra` without psycopg."""
    with needs("postgres", "PostgreSQL persistence"):
        import psycopg
    try:
        return psycopg.connect(
            host=settings.postgres_host,
            port=settings.postgres_port,
            user=settings.postgres_user,
            password=settings.postgres_password.get_secret_value(),
            dbname=dbname or settings.postgres_dbname,
            connect_timeout=settings.postgres_connect_timeout,
            **kwargs,
        )
    except psycopg.OperationalError as e:
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else repr(e)
        raise InfrastructureUnavailable(
            "PostgreSQL", settings.postgres_address, reason
        ) from None


def _already_exists() -> tuple[type[Exception], ...]:
    """What a ``CREATE`` raises when a concurrent creator won the race: the
    ``Duplicate*`` errors, or, when both passed the existence check before
    either committed, a unique violation on a catalog index
    (``pg_database_datname_index``, ``pg_namespace_nspname_index``,
    ``pg_type_typname_nsp_index``)."""
    from psycopg import errors

    return (
        errors.DuplicateDatabase,
        errors.DuplicateSchema,
        errors.DuplicateObject,
        errors.DuplicateTable,
        errors.UniqueViolation,
    )


def ensure_database(settings: Settings) -> None:
    """Create the configured database if it does not exist yet."""
    try:
        connect(settings).close()
        return
    except InfrastructureUnavailable as e:
        if "does not exist" not in e.reason:
            raise
    from psycopg import sql

    with (
        connect(settings, dbname="postgres", autocommit=True) as conn,
        contextlib.suppress(*_already_exists()),
    ):
        conn.execute(
            sql.SQL("CREATE DATABASE {}").format(
                sql.Identifier(settings.postgres_dbname)
            )
        )


def ensure_schema(settings: Settings, schema: str) -> None:
    """Create the database and ``schema`` in it if they do not exist yet."""
    ensure_database(settings)
    from psycopg import sql

    with (
        connect(settings, autocommit=True) as conn,
        contextlib.suppress(*_already_exists()),
    ):
        conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
        )


@contextlib.contextmanager
def creating_tables(settings: Settings, schema: str) -> Iterator[None]:
    """Hold a lock on ``schema`` while its tables and types are created.

    Two processes creating the same type at once (two instances of a service
    starting together, say) make PostgreSQL raise a unique violation even with
    ``IF NOT EXISTS``; taking turns avoids it. The lock is a session advisory
    lock on a connection of its own, released when the block ends.
    """
    key = zlib.crc32(f"ordersys:schema:{schema}".encode()) - 2**31
    with connect(settings, autocommit=True) as conn:
        conn.execute("SELECT pg_advisory_lock(%s)", (key,))
        try:
            yield
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


def claim_tables(settings: Settings, schema: str, name: str, owner: str) -> str:
    """Record ``owner`` (an application's qualified class name) as the owner of
    the tables named ``name`` in ``schema``, unless one is recorded already;
    return the owner recorded. Call it under :func:`creating_tables`."""
    from psycopg import sql

    table = sql.Identifier(schema, OWNERS_TABLE)
    with connect(settings, autocommit=True) as conn:
        conn.execute(
            sql.SQL(
                "CREATE TABLE IF NOT EXISTS {} "
                "(name text PRIMARY KEY, owner text NOT NULL)"
            ).format(table)
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {} VALUES (%s, %s) ON CONFLICT (name) DO NOTHING"
            ).format(table),
            (name, owner),
        )
        row = conn.execute(
            sql.SQL("SELECT owner FROM {} WHERE name = %s").format(table), (name,)
        ).fetchone()
    assert row is not None  # inserted above, or there before
    return str(row[0])
