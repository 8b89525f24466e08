"""eventsourcing's SQLite persistence, with each application's tables named
after it, as they are on PostgreSQL.

eventsourcing's SQLite factory puts every application's events in one
``stored_events`` table: two applications in one database file (one
``ORDERSYS_SQLITE_PATH`` for everything) would append to each other's. Here
an application ``Bank`` keeps its events in ``bank_events`` and its snapshots
in ``bank_snapshots``; the tracking table is shared, keyed by application
name, as eventsourcing designed it.
"""

from __future__ import annotations

from eventsourcing.persistence import (
    AggregateRecorder,
    ApplicationRecorder,
    ProcessRecorder,
)
from eventsourcing.sqlite import SQLiteFactory


class Factory(SQLiteFactory):
    """``PERSISTENCE_MODULE`` ``ordersys.persistence.sqlite_factory``."""

    def _table(self, purpose: str) -> str:
        return f"{self.env.name.lower() or 'stored'}_{purpose}"

    def aggregate_recorder(self, purpose: str = "events") -> AggregateRecorder:
        recorder = self.aggregate_recorder_class(
            datastore=self.datastore, events_table_name=self._table(purpose)
        )
        if self.env_create_table():
            recorder.create_table()
        return recorder

    def application_recorder(self) -> ApplicationRecorder:
        recorder = self.application_recorder_class(
            datastore=self.datastore, events_table_name=self._table("events")
        )
        if self.env_create_table():
            recorder.create_table()
        return recorder

    def process_recorder(self) -> ProcessRecorder:
        recorder = self.process_recorder_class(
            datastore=self.datastore, events_table_name=self._table("events")
        )
        if self.env_create_table():
            recorder.create_table()
        return recorder
