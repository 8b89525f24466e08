"""Read models in SQLite, for the embedded mode: they outlive a restart, so a
projection resumes where it stopped instead of replaying every event.

As in PostgreSQL, each generation of a projection is a table of documents
(``<projection>_g<N>``, JSON text) beside its tracking table
(``<projection>_g<N>_tracking``), and a registry row names the live one.
One connection per store (:class:`~ordersys.persistence.sqlite.Database`);
a batch's documents and its position are written in one transaction.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from eventsourcing.persistence import IntegrityError, Tracking

from ordersys.persistence.database import schema_name
from ordersys.persistence.sqlite import Database, json_equal, json_order
from ordersys.readmodels.records import scalar_filter
from ordersys.readmodels.store import (
    Change,
    Document,
    Key,
    ReadModelStore,
    ReadModelView,
    Row,
    Stored,
)

REGISTRY = "ordersys_read_models"


class SQLiteView(ReadModelView):
    """One generation's documents and tracking positions."""

    def __init__(self, database: Database, table: str) -> None:
        super().__init__()
        self.database = database
        self.documents = f'"{table}"'
        self.tracking = f'"{table}_tracking"'
        with database.transaction() as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {self.documents} (collection TEXT NOT "
                "NULL, key TEXT NOT NULL, doc TEXT NOT NULL, position INTEGER NOT "
                "NULL, PRIMARY KEY (collection, key))"
            )
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {self.tracking} (application_name TEXT "
                "PRIMARY KEY, notification_id INTEGER NOT NULL)"
            )

    def apply(
        self,
        changes: Sequence[Change],
        tracking: Tracking,
        *,
        after: int | None = None,
    ) -> None:
        with self.database.transaction() as cursor:
            self._track(cursor, tracking, after)
            cursor.executemany(
                f"DELETE FROM {self.documents} WHERE collection = ? AND key = ?",
                [(c.collection, c.key) for c in changes if c.json is None],
            )
            cursor.executemany(
                f"INSERT OR REPLACE INTO {self.documents} VALUES (?, ?, ?, ?)",
                [
                    (c.collection, c.key, text.decode(), tracking.notification_id)
                    for c in changes
                    if (text := c.json) is not None
                ],
            )

    def load(self, rows: Iterable[Row], tracking: Tracking) -> None:
        with self.database.transaction() as cursor:
            self._track(cursor, tracking)
            cursor.executemany(
                f"INSERT INTO {self.documents} VALUES (?, ?, ?, ?)",
                ((r.collection, r.key, r.json.decode(), r.position) for r in rows),
            )

    def _track(
        self, cursor: sqlite3.Cursor, tracking: Tracking, after: int | None = None
    ) -> None:
        row = cursor.execute(
            f"SELECT notification_id FROM {self.tracking} WHERE application_name = ?",
            (tracking.application_name,),
        ).fetchone()
        recorded = 0 if row is None else row[0]
        if recorded >= tracking.notification_id or (
            after is not None and recorded != after
        ):
            msg = (
                f"Tracking notification ID {tracking.notification_id} "
                f"not after current max tracking ID {recorded}"
            )
            raise IntegrityError(msg)
        cursor.execute(
            f"INSERT OR REPLACE INTO {self.tracking} VALUES (?, ?)",
            (tracking.application_name, tracking.notification_id),
        )

    def insert_tracking(self, tracking: Tracking) -> None:
        with self.database.transaction() as cursor:
            self._track(cursor, tracking)

    def max_tracking_id(self, application_name: str) -> int | None:
        rows = self.database.query(
            f"SELECT notification_id FROM {self.tracking} WHERE application_name = ?",
            (application_name,),
        )
        return int(rows[0][0]) if rows else None

    def get(self, collection: str, key: str) -> Stored | None:
        rows = self.database.query(
            f"SELECT doc, position FROM {self.documents} "
            "WHERE collection = ? AND key = ?",
            (collection, key),
        )
        return Stored(json.loads(rows[0][0]), rows[0][1]) if rows else None

    def get_many(self, keys: Collection[Key]) -> dict[Key, bytes | None]:
        found: dict[Key, bytes | None] = dict.fromkeys(keys)
        for collection in {c for c, _ in found}:
            wanted = [k for c, k in found if c == collection]
            for start in range(0, len(wanted), 500):
                some = wanted[start : start + 500]
                rows = self.database.query(
                    f"SELECT key, doc FROM {self.documents} WHERE collection = ? "
                    f"AND key IN ({', '.join('?' * len(some))})",
                    [collection, *some],
                )
                for key, doc in rows:
                    found[(collection, key)] = doc.encode()
        return found

    def drop(self) -> None:
        with self.database.transaction() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {self.documents}")
            cursor.execute(f"DROP TABLE IF EXISTS {self.tracking}")


class SQLiteReadModelStore(ReadModelStore):
    """A projection's generations in the SQLite database at ``path``."""

    def __init__(self, path: str, projection: str) -> None:
        super().__init__(schema_name(projection))
        self.database = Database(path)
        self._views: dict[int, SQLiteView] = {}
        with self.database.transaction() as cursor:
            cursor.execute(
                f"CREATE TABLE IF NOT EXISTS {REGISTRY} (projection TEXT PRIMARY "
                "KEY, live INTEGER NOT NULL, latest INTEGER NOT NULL)"
            )
            cursor.execute(
                f"INSERT OR IGNORE INTO {REGISTRY} VALUES (?, 1, 1)",
                (self.projection,),
            )

    def _registered(self) -> tuple[int, int]:
        rows = self.database.query(
            f"SELECT live, latest FROM {REGISTRY} WHERE projection = ?",
            (self.projection,),
        )
        return int(rows[0][0]), int(rows[0][1])

    def live_generation(self) -> int:
        return self._registered()[0]

    def view(self, generation: int) -> SQLiteView:
        if generation not in self._views:
            table = f"{self.projection}_g{generation}"
            self._views[generation] = SQLiteView(self.database, table)
        return self._views[generation]

    def new_generation(self) -> int:
        with self.database.transaction() as cursor:
            cursor.execute(
                f"UPDATE {REGISTRY} SET latest = latest + 1 WHERE projection = ?",
                (self.projection,),
            )
        generation = self._registered()[1]
        self.view(generation)
        return generation

    def promote(self, generation: int) -> None:
        self.view(generation)
        with self.database.transaction() as cursor:
            cursor.execute(
                f"UPDATE {REGISTRY} SET live = ? WHERE projection = ?",
                (generation, self.projection),
            )

    def drop(self, generation: int) -> None:
        if generation == self.live_generation():
            msg = f"generation {generation} of {self.projection} is live"
            raise ValueError(msg)
        self.view(generation).drop()
        self._views.pop(generation, None)

    def get(self, collection: str, key: str) -> Stored | None:
        return self.view(self.live_generation()).get(collection, key)

    def _filter(
        self, collection: str, where: Mapping[str, Any] | None
    ) -> tuple[str, list[Any]]:
        table = self.view(self.live_generation()).documents
        clause, params = json_equal(scalar_filter(where))
        return f"FROM {table} WHERE collection = ?{clause}", [collection, *params]

    def find(
        self,
        collection: str,
        where: Mapping[str, Any] | None = None,
        *,
        order_by: str | None = None,
        descending: bool = False,
        limit: int = 50,
        offset: int = 0,
    ) -> list[Document]:
        clause, params = self._filter(collection, where)
        order = "key"
        if order_by is not None:
            by_field, more = json_order(order_by, descending=descending)
            order, params = f"{by_field}, key", [*params, *more]
        rows = self.database.query(
            f"SELECT doc {clause} ORDER BY {order} LIMIT ? OFFSET ?",
            [*params, limit, offset],
        )
        return [json.loads(row[0]) for row in rows]

    def count(self, collection: str, where: Mapping[str, Any] | None = None) -> int:
        clause, params = self._filter(collection, where)
        return int(self.database.query(f"SELECT count(*) {clause}", params)[0][0])

    def close(self) -> None:
        self.database.close()
