"""The analytics tables: one row per order, kept from the orders' events,
and the figures computed from those rows when asked.

Every timestamp is the event's own, so the figures are the same however late
or often the events are delivered.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from ordersys.persistence.database import connect, creating_tables, ensure_schema
from ordersys.settings import Settings

TABLE = """
CREATE TABLE IF NOT EXISTS {orders} (
    order_id uuid PRIMARY KEY,
    customer_id uuid NOT NULL,
    status text NOT NULL,
    total_cents bigint NOT NULL DEFAULT 0,
    lines jsonb NOT NULL DEFAULT '[]',
    placed_at timestamptz NOT NULL,
    submitted_at timestamptz,
    confirmed_at timestamptz,
    finished_at timestamptz,
    version int NOT NULL)
"""

REVENUE = """
SELECT (confirmed_at AT TIME ZONE 'UTC')::date::text AS day,
       sum(total_cents)::bigint AS revenue_cents, count(*) AS orders
FROM {orders} WHERE confirmed_at IS NOT NULL AND status <> 'CANCELLED'
GROUP BY 1 ORDER BY 1 DESC LIMIT %s
"""

BY_STATUS = "SELECT status, count(*) FROM {orders} GROUP BY status ORDER BY status"

TOP_PRODUCTS = """
SELECT line->>'product_id' AS product_id,
       sum((line->>'quantity')::int)::bigint AS quantity,
       sum((line->>'quantity')::bigint * (line->>'unit_price_cents')::bigint)::bigint
           AS revenue_cents
FROM {orders}, jsonb_array_elements(lines) AS line
WHERE confirmed_at IS NOT NULL AND status <> 'CANCELLED'
GROUP BY 1 ORDER BY quantity DESC, product_id LIMIT %s
"""

CONVERSION = """
SELECT count(*) AS placed, count(submitted_at) AS submitted,
       count(confirmed_at) AS confirmed,
       count(*) FILTER (WHERE status = 'CANCELLED') AS cancelled
FROM {orders}
"""

SAGA_DURATION = """
SELECT count(*) AS orders, avg(seconds) AS mean,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY seconds) AS p50,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY seconds) AS p95,
       max(seconds) AS max
FROM (SELECT extract(epoch FROM finished_at - submitted_at)::float AS seconds
      FROM {orders} WHERE submitted_at IS NOT NULL AND finished_at IS NOT NULL) AS d
"""


class Records:
    """The analytics service's table in ``schema``."""

    def __init__(self, settings: Settings, schema: str) -> None:
        self.settings = settings
        self.orders = sql.Identifier(schema, "analytics_orders")
        ensure_schema(settings, schema)
        with (
            creating_tables(settings, schema),
            connect(settings, autocommit=True) as conn,
        ):
            conn.execute(self._sql(TABLE))

    def _sql(self, text: str) -> sql.Composed:
        return sql.SQL(text).format(orders=self.orders)

    def placed(
        self, conn: psycopg.Connection[Any], event: Any, lines: list[dict[str, Any]]
    ) -> None:
        conn.execute(
            self._sql(
                "INSERT INTO {orders} (order_id, customer_id, status, lines, "
                "placed_at, version) VALUES (%s, %s, 'PENDING', %s, %s, %s) "
                "ON CONFLICT DO NOTHING"
            ),
            (
                event.originator_id,
                event.customer_id,
                Jsonb(lines),
                event.timestamp,
                event.originator_version,
            ),
        )

    def change(
        self, conn: psycopg.Connection[Any], event: Any, status: str, **columns: Any
    ) -> None:
        """Record what ``event`` tells of its order. Each column but the status
        is set by one kind of event only; the status is taken only from an event
        later than the last one applied, so a redelivered or overtaken event
        cannot move an order back."""
        names = list(columns)
        assignments = sql.SQL("").join(
            sql.SQL(", {} = %s").format(sql.Identifier(n)) for n in names
        )
        updated = conn.execute(
            self._sql(
                "UPDATE {orders} SET status = CASE WHEN version < %s THEN %s "
                "ELSE status END, version = greatest(version, %s)"
            )
            + assignments
            + sql.SQL(" WHERE order_id = %s"),
            [
                event.originator_version,
                status,
                event.originator_version,
                *(Jsonb(columns[n]) if n == "lines" else columns[n] for n in names),
                event.originator_id,
            ],
        ).rowcount
        if not updated:
            msg = f"order {event.originator_id} has not been placed here yet"
            raise LookupError(msg)

    def figures(self, *, top: int, days: int) -> dict[str, Any]:
        with connect(self.settings) as conn, conn.cursor(row_factory=dict_row) as cur:
            revenue = cur.execute(self._sql(REVENUE), (days,)).fetchall()
            by_status = {
                row["status"]: row["count"]
                for row in cur.execute(self._sql(BY_STATUS)).fetchall()
            }
            top_products = cur.execute(self._sql(TOP_PRODUCTS), (top,)).fetchall()
            conversion = cur.execute(self._sql(CONVERSION)).fetchone() or {}
            duration = cur.execute(self._sql(SAGA_DURATION)).fetchone() or {}
        submitted = conversion.get("submitted", 0)
        return {
            "revenue_per_day": revenue,
            "orders_by_status": by_status,
            "top_products": top_products,
            "conversion": {
                **conversion,
                "rate": conversion.get("confirmed", 0) / submitted
                if submitted
                else None,
            },
            "saga_duration_seconds": duration,
        }
