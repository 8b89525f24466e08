"""Which application class owns the tables of each name in a store.

Two application classes with one name (a user's own ``Orders`` and the shop's,
say) would otherwise share the tables named after it, each appending to the
other's. The first to open a store records itself in its ``ordersys_owner``
table; :func:`ordersys.application.Application` refuses to open tables that
another class owns. PostgreSQL's side is :func:`ordersys.persistence.database.
claim_tables`; SQLite's is here.
"""

from __future__ import annotations

import contextlib
import sqlite3

OWNERS_TABLE = "ordersys_owner"
"""The table, in each store (PostgreSQL schema, SQLite database), that records
which application class owns the tables of each name there."""


def claim_sqlite_tables(path: str, name: str, owner: str) -> str:
    """Record ``owner`` as the owner of the tables named ``name`` in the SQLite
    database at ``path`` (a file name or a ``file:`` URI), unless one is
    recorded already; return the owner recorded."""
    with contextlib.closing(sqlite3.connect(path, uri=True)) as conn, conn:
        conn.execute(
            f"CREATE TABLE IF NOT EXISTS {OWNERS_TABLE} "
            "(name TEXT PRIMARY KEY, owner TEXT NOT NULL)"
        )
        conn.execute(
            f"INSERT OR IGNORE INTO {OWNERS_TABLE} VALUES (?, ?)", (name, owner)
        )
        row = conn.execute(
            f"SELECT owner FROM {OWNERS_TABLE} WHERE name = ?", (name,)
        ).fetchone()
    return str(row[0])
