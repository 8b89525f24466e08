"""Read models in PostgreSQL.

Each generation of a projection is a table of documents (``<projection>_g<N>``,
JSONB) beside its tracking table (``<projection>_g<N>_tracking``). Readers query
the view ``<projection>``, which points at the live generation; promoting a new
generation replaces the view in the same transaction that records it, so a
reader sees either the old generation or the new one, never neither.

Read models are rebuildable, so their transactions commit with
``synchronous_commit = off``: PostgreSQL acknowledges the commit before its
WAL reaches the disk. A crash of the server (not of the projection) may then
lose the last ~600 ms of batches (three times ``wal_writer_delay``), documents
and tracking together, never one without the other and never corrupted: the
projection applies those events again when it resumes.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from itertools import islice
from typing import Any

from eventsourcing.persistence import IntegrityError, Tracking

from ordersys.extras import needs
from ordersys.persistence.database import creating_tables, ensure_schema, schema_name
from ordersys.readmodels.store import (
    Change,
    Document,
    Key,
    ReadModelStore,
    ReadModelView,
    Row,
    Stored,
)
from ordersys.settings import Settings

with needs("postgres", "PostgresReadModelStore"):
    from eventsourcing.postgres import PostgresDatastore, PostgresTrackingRecorder
    from psycopg import sql

REGISTRY = "ordersys_read_models"


class PostgresView(PostgresTrackingRecorder, ReadModelView):
    """One generation's documents and tracking positions."""

    def __init__(self, datastore: PostgresDatastore, table: str) -> None:
        super().__init__(datastore, tracking_table_name=f"{table}_tracking")
        self.check_identifier_length(f"{table}_tracking")
        schema, documents = sql.Identifier(datastore.schema), sql.Identifier(table)
        self.sql_create_statements.extend(
            [
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {}.{} (collection text NOT NULL, "
                    "key text NOT NULL, doc jsonb NOT NULL, position bigint NOT NULL, "
                    "PRIMARY KEY (collection, key))"
                ).format(schema, documents),
                sql.SQL(
                    "CREATE INDEX IF NOT EXISTS {} ON {}.{} "
                    "USING gin (doc jsonb_path_ops)"
                ).format(sql.Identifier(f"{table}_doc_idx"), schema, documents),
            ]
        )
        self._select = sql.SQL(
            "SELECT doc, position FROM {}.{} WHERE collection = %s AND key = %s"
        ).format(schema, documents)
        # Arrays travel in binary (%b), the documents as bytea: a text array
        # of JSON would be escaped element by element on the way.
        self._select_many = sql.SQL(
            "SELECT collection, key, convert_to(doc::text, 'UTF8') AS doc "
            "FROM {}.{} WHERE (collection, key) IN "
            "(SELECT * FROM unnest(%b::text[], %b::text[]))"
        ).format(schema, documents)
        self._upsert = sql.SQL(
            "INSERT INTO {}.{} (collection, key, doc, position) "
            "SELECT c, k, convert_from(d, 'UTF8')::jsonb, %s "
            "FROM unnest(%b::text[], %b::text[], %b::bytea[]) "
            "AS u(c, k, d) ON CONFLICT (collection, key) "
            "DO UPDATE SET doc = excluded.doc, position = excluded.position"
        ).format(schema, documents)
        self._delete = sql.SQL(
            "DELETE FROM {}.{} WHERE (collection, key) IN "
            "(SELECT * FROM unnest(%b::text[], %b::text[]))"
        ).format(schema, documents)
        tracking_table = sql.Identifier(self.tracking_table_name)
        self._advance = sql.SQL(
            "INSERT INTO {0}.{1} AS t VALUES (%s, %s) "
            "ON CONFLICT (application_name) DO UPDATE "
            "SET notification_id = excluded.notification_id "
            "WHERE t.notification_id = %s RETURNING t.notification_id"
        ).format(schema, tracking_table)
        self._copy = sql.SQL(
            "COPY {}.{} (collection, key, doc, position) FROM STDIN"
        ).format(schema, documents)

    def _track(self, curs: Any, tracking: Tracking, after: int | None) -> None:
        if after is None:
            self._insert_tracking(curs, tracking)
            return
        if tracking.notification_id <= after:
            msg = f"tracking position {tracking.notification_id} is not after {after}"
            raise IntegrityError(msg)
        params = (tracking.application_name, tracking.notification_id, after)
        curs.execute(self._advance, params, prepare=True)
        if curs.fetchone() is None:
            msg = f"tracking of {tracking.application_name} moved past {after}"
            raise IntegrityError(msg)

    def apply(
        self,
        changes: Sequence[Change],
        tracking: Tracking,
        *,
        after: int | None = None,
    ) -> None:
        puts: list[tuple[str, str, bytes]] = []
        deletes: list[Change] = []
        for change in changes:
            text = change.json
            if text is None:
                deletes.append(change)
            else:
                puts.append((change.collection, change.key, text))
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("SET LOCAL synchronous_commit = off")
            self._track(curs, tracking, after)
            if puts:
                collections, keys, texts = zip(*puts, strict=True)
                curs.execute(
                    self._upsert,
                    (
                        tracking.notification_id,
                        list(collections),
                        list(keys),
                        list(texts),
                    ),
                    prepare=True,
                )
            if deletes:
                curs.execute(
                    self._delete,
                    ([c.collection for c in deletes], [c.key for c in deletes]),
                    prepare=True,
                )

    def load(self, rows: Iterable[Row], tracking: Tracking) -> None:
        lines = map(_copy_line, rows)
        with self.datastore.transaction(commit=True) as curs:
            curs.execute("SET LOCAL synchronous_commit = off")
            self._insert_tracking(curs, tracking)
            with curs.copy(self._copy) as copy:
                # In chunks: the server parses one while the next is encoded.
                while chunk := b"".join(islice(lines, 1000)):
                    copy.write(chunk)

    def get(self, collection: str, key: str) -> Stored | None:
        with self.datastore.get_connection() as conn:
            row = conn.execute(self._select, (collection, key), prepare=True).fetchone()
        return None if row is None else Stored(row["doc"], row["position"])

    def get_many(self, keys: Collection[Key]) -> dict[Key, bytes | None]:
        found: dict[Key, bytes | None] = dict.fromkeys(keys)
        wanted = list(found)
        with self.datastore.get_connection() as conn:
            rows = conn.execute(
                self._select_many,
                ([c for c, _ in wanted], [k for _, k in wanted]),
                binary=True,
            ).fetchall()
        for row in rows:
            found[(row["collection"], row["key"])] = row["doc"]
        return found


def _copy_field(text: bytes) -> bytes:
    """``text`` escaped for COPY's text format."""
    if b"\\" in text:
        text = text.replace(b"\\", b"\\\\")
    for special, escaped in ((b"\t", b"\\t"), (b"\n", b"\\n"), (b"\r", b"\\r")):
        if special in text:
            text = text.replace(special, escaped)
    return text


def _copy_line(row: Row) -> bytes:
    # orjson writes no control character raw, so a document needs at most its
    # backslashes doubled; keys may hold anything.
    doc = row.json.replace(b"\\", b"\\\\") if b"\\" in row.json else row.json
    return b"%s\t%s\t%s\t%d\n" % (
        _copy_field(row.collection.encode()),
        _copy_field(row.key.encode()),
        doc,
        row.position,
    )


class PostgresReadModelStore(ReadModelStore):
    """A projection's generations in one schema of the configured database."""

    def __init__(self, settings: Settings, projection: str) -> None:
        super().__init__(schema_name(projection))
        schema = settings.postgres_schema or self.projection
        ensure_schema(settings, schema)
        self.datastore = PostgresDatastore(
            dbname=settings.postgres_dbname,
            host=settings.postgres_host,
            port=settings.postgres_port,
            user=settings.postgres_user,
            password=settings.postgres_password.get_secret_value(),
            connect_timeout=settings.postgres_connect_timeout,
            pool_size=2,
            max_overflow=settings.postgres_max_overflow,
            schema=schema,
        )
        self._schema = sql.Identifier(schema)
        self._registry = sql.Identifier(REGISTRY)
        self._reads = sql.Identifier(self.projection)
        self._views: dict[int, PostgresView] = {}
        self.settings = settings
        with (
            creating_tables(settings, schema),
            self.datastore.transaction(commit=True) as curs,
        ):
            curs.execute(
                sql.SQL(
                    "CREATE TABLE IF NOT EXISTS {}.{} (projection text PRIMARY KEY, "
                    "live integer NOT NULL, latest integer NOT NULL)"
                ).format(self._schema, self._registry)
            )

    def _table(self, generation: int) -> str:
        return f"{self.projection}_g{generation}"

    def _registered(self) -> tuple[int, int] | None:
        with self.datastore.get_connection() as conn:
            row = conn.execute(
                sql.SQL("SELECT live, latest FROM {}.{} WHERE projection = %s").format(
                    self._schema, self._registry
                ),
                (self.projection,),
            ).fetchone()
        return None if row is None else (row["live"], row["latest"])

    def live_generation(self) -> int:
        registered = self._registered()
        if registered is None:
            self.view(1)
            with self.datastore.transaction(commit=True) as curs:
                curs.execute(
                    sql.SQL(
                        "INSERT INTO {}.{} VALUES (%s, 1, 1) ON CONFLICT DO NOTHING"
                    ).format(self._schema, self._registry),
                    (self.projection,),
                )
                if curs.rowcount:
                    self._point_reads_at(curs, 1)
            registered = self._registered()
            assert registered is not None
        return registered[0]

    def view(self, generation: int) -> PostgresView:
        if generation not in self._views:
            view = PostgresView(self.datastore, self._table(generation))
            with creating_tables(self.settings, self.datastore.schema):
                view.create_table()
            self._views[generation] = view
        return self._views[generation]

    def new_generation(self) -> int:
        self.live_generation()
        with self.datastore.transaction(commit=True) as curs:
            row = curs.execute(
                sql.SQL(
                    "UPDATE {}.{} SET latest = latest + 1 WHERE projection = %s "
                    "RETURNING latest"
                ).format(self._schema, self._registry),
                (self.projection,),
            ).fetchone()
        assert row is not None
        generation: int = row["latest"]
        self.view(generation)
        return generation

    def _point_reads_at(self, curs: Any, generation: int) -> None:
        curs.execute(
            sql.SQL(
                "CREATE OR REPLACE VIEW {}.{} AS "
                "SELECT collection, key, doc, position FROM {}.{}"
            ).format(
                self._schema,
                self._reads,
                self._schema,
                sql.Identifier(self._table(generation)),
            )
        )

    def promote(self, generation: int) -> None:
        self.view(generation)
        with self.datastore.transaction(commit=True) as curs:
            self._point_reads_at(curs, generation)
            curs.execute(
                sql.SQL("UPDATE {}.{} SET live = %s WHERE projection = %s").format(
                    self._schema, self._registry
                ),
                (generation, self.projection),
            )

    def drop(self, generation: int) -> None:
        if generation == self.live_generation():
            msg = f"generation {generation} of {self.projection} is live"
            raise ValueError(msg)
        self._views.pop(generation, None)
        table = self._table(generation)
        with self.datastore.transaction(commit=True) as curs:
            for name in (table, f"{table}_tracking"):
                curs.execute(
                    sql.SQL("DROP TABLE IF EXISTS {}.{}").format(
                        self._schema, sql.Identifier(name)
                    )
                )

    def get(self, collection: str, key: str) -> Stored | None:
        self.live_generation()
        with self.datastore.get_connection() as conn:
            row = conn.execute(
                sql.SQL(
                    "SELECT doc, position FROM {}.{} WHERE collection = %s AND key = %s"
                ).format(self._schema, self._reads),
                (collection, key),
                prepare=True,
            ).fetchone()
        return None if row is None else Stored(row["doc"], row["position"])

    def _filter(
        self, collection: str, where: Mapping[str, Any] | None
    ) -> tuple[sql.Composable, list[Any]]:
        clause = sql.SQL("FROM {}.{} WHERE collection = %s").format(
            self._schema, self._reads
        )
        params: list[Any] = [collection]
        if where:
            clause += sql.SQL(" AND doc @> %s::jsonb")
            params.append(json.dumps(dict(where)))
        return clause, params

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
        self.live_generation()
        clause, params = self._filter(collection, where)
        query = sql.SQL("SELECT doc ") + clause + sql.SQL(" ORDER BY ")
        if order_by is not None:
            direction = sql.SQL("DESC" if descending else "ASC")
            query += sql.SQL("doc -> %s {} NULLS LAST, ").format(direction)
            params.append(order_by)
        query += sql.SQL("key LIMIT %s OFFSET %s")
        params.extend([limit, offset])
        with self.datastore.get_connection() as conn:
            return [row["doc"] for row in conn.execute(query, params).fetchall()]

    def count(self, collection: str, where: Mapping[str, Any] | None = None) -> int:
        self.live_generation()
        clause, params = self._filter(collection, where)
        with self.datastore.get_connection() as conn:
            row = conn.execute(
                sql.SQL("SELECT count(*) AS n ") + clause, params
            ).fetchone()
        return int(row["n"]) if row else 0

    def close(self) -> None:
        self.datastore.close()
