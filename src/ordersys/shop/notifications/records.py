"""The notification record in PostgreSQL: who each order belongs to, the
customers' addresses, and every notification with its delivery status.

``UNIQUE (event_id, customer_id)`` is what makes a customer hear of an event
at most once, whatever the broker redelivers.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from ordersys.persistence.database import connect, creating_tables, ensure_schema
from ordersys.settings import Settings
from ordersys.shop.notifications.messages import Text

TABLES = """
CREATE TABLE IF NOT EXISTS {customers} (
    customer_id uuid PRIMARY KEY, email text NOT NULL, name text NOT NULL);
CREATE TABLE IF NOT EXISTS {orders} (
    order_id uuid PRIMARY KEY, customer_id uuid NOT NULL);
CREATE TABLE IF NOT EXISTS {notifications} (
    notification_id bigserial PRIMARY KEY,
    event_id text NOT NULL,
    customer_id uuid NOT NULL,
    order_id uuid NOT NULL,
    kind text NOT NULL,
    subject text NOT NULL,
    body text NOT NULL,
    status text NOT NULL,
    error text NOT NULL DEFAULT '',
    created_at timestamptz NOT NULL,
    sent_at timestamptz,
    UNIQUE (event_id, customer_id));
CREATE INDEX IF NOT EXISTS {by_status} ON {notifications} (status, notification_id);
"""

CLAIM = """
UPDATE {notifications} SET status = 'sending' WHERE notification_id IN (
    SELECT notification_id FROM {notifications} WHERE status = 'pending'
    ORDER BY notification_id LIMIT %s FOR UPDATE SKIP LOCKED)
RETURNING notification_id
"""

SELECT = """
SELECT n.notification_id, n.event_id, n.customer_id::text, n.order_id::text, n.kind,
       n.subject, n.body, n.status, n.error, n.created_at, n.sent_at, c.email
FROM {notifications} n LEFT JOIN {customers} c USING (customer_id)
"""


class Records:
    """The notifications service's tables in ``schema``."""

    def __init__(self, settings: Settings, schema: str) -> None:
        self.settings = settings
        self.names = {
            "customers": sql.Identifier(schema, "notification_customers"),
            "orders": sql.Identifier(schema, "notification_orders"),
            "notifications": sql.Identifier(schema, "notifications"),
            "by_status": sql.Identifier("notifications_by_status"),
        }
        ensure_schema(settings, schema)
        with (
            creating_tables(settings, schema),
            connect(settings, autocommit=True) as conn,
        ):
            conn.execute(self._sql(TABLES))

    def _sql(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(**self.names)

    def remember_order(
        self, conn: psycopg.Connection[Any], order_id: UUID, customer_id: UUID
    ) -> None:
        conn.execute(
            self._sql("INSERT INTO {orders} VALUES (%s, %s) ON CONFLICT DO NOTHING"),
            (order_id, customer_id),
        )

    def remember_customer(
        self,
        conn: psycopg.Connection[Any],
        customer_id: UUID,
        *,
        email: str | None = None,
        name: str,
    ) -> None:
        if email is None:
            conn.execute(
                self._sql("UPDATE {customers} SET name = %s WHERE customer_id = %s"),
                (name, customer_id),
            )
            return
        conn.execute(
            self._sql(
                "INSERT INTO {customers} VALUES (%s, %s, %s) ON CONFLICT (customer_id) "
                "DO UPDATE SET email = excluded.email, name = excluded.name"
            ),
            (customer_id, email, name),
        )

    def customer_of(self, conn: psycopg.Connection[Any], order_id: UUID) -> UUID | None:
        row = conn.execute(
            self._sql("SELECT customer_id FROM {orders} WHERE order_id = %s"),
            (order_id,),
        ).fetchone()
        return None if row is None else UUID(str(row[0]))

    def add(
        self,
        conn: psycopg.Connection[Any],
        event_id: str,
        customer_id: UUID,
        order_id: UUID,
        text: Text,
        *,
        status: str,
        at: object,
    ) -> bool:
        """Record one notification; False if this customer has it already."""
        inserted = conn.execute(
            self._sql(
                "INSERT INTO {notifications} (event_id, customer_id, order_id, kind, "
                "subject, body, status, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING"
            ),
            (
                event_id,
                customer_id,
                order_id,
                text.kind,
                text.subject,
                text.body,
                status,
                at,
            ),
        ).rowcount
        return bool(inserted)

    def claim(self, conn: psycopg.Connection[Any], limit: int) -> list[dict[str, Any]]:
        """Mark up to ``limit`` pending notifications as being sent, and return
        them. A crash while sending leaves them ``sending``: they are never sent
        twice (at most once), and the operator sees which ones to check."""
        with conn.transaction():
            claimed = conn.execute(
                self._sql(CLAIM),
                (limit,),
            ).fetchall()
        ids = [row[0] for row in claimed]
        return (
            self._select(conn, "WHERE n.notification_id = ANY(%s)", [ids])
            if ids
            else []
        )

    def finish(
        self, conn: psycopg.Connection[Any], notification_id: int, error: str
    ) -> None:
        conn.execute(
            self._sql(
                "UPDATE {notifications} SET status = %s, error = %s, sent_at = now() "
                "WHERE notification_id = %s"
            ),
            ("failed" if error else "sent", error, notification_id),
        )

    def find(
        self,
        *,
        customer_id: UUID | None,
        order_id: UUID | None,
        limit: int,
        offset: int,
    ) -> tuple[list[dict[str, Any]], int]:
        """Notifications newest first, and how many match in all."""
        clauses, params = [], []
        for column, value in (("customer_id", customer_id), ("order_id", order_id)):
            if value is not None:
                clauses.append(f"n.{column} = %s")
                params.append(value)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        with connect(self.settings) as conn:
            rows = self._select(
                conn,
                f"{where} ORDER BY n.notification_id DESC LIMIT %s OFFSET %s",
                [*params, limit, offset],
            )
            count = conn.execute(
                self._sql("SELECT count(*) FROM {notifications} n ") + sql.SQL(where),
                params,
            ).fetchone()
        return rows, int(count[0]) if count else 0

    def _select(
        self, conn: psycopg.Connection[Any], tail: str, params: list[Any]
    ) -> list[dict[str, Any]]:
        query = self._sql(SELECT) + sql.SQL(tail)
        with conn.cursor(row_factory=dict_row) as cursor:
            rows = cursor.execute(query, params).fetchall()
        for row in rows:
            for column in ("created_at", "sent_at"):
                if row[column] is not None:
                    row[column] = row[column].isoformat()
        return rows
