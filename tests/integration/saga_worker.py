"""One replica's saga runner, for the partition tests.

``python -m tests.integration.saga_worker <schema> <name> <dir>`` runs the
hold-expiry process on PostgreSQL with its partition leases, as one replica
of several. Each command it sends is appended to ``<dir>/<name>.sent`` (type,
booking id, command id) before it is sent, so that a kill -9 leaves the log
of what went out; ``<dir>/<name>.json`` says which partitions it owns now.
Each batch of commands takes a while (as a broker round trip would), so that a
kill lands with commands in flight.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any
from uuid import UUID

from ordersys.processes import Batch, BusSender, ProcessRunner, Traces, send_batch
from ordersys.settings import load_settings
from tests.unit.bookings import Bookings, HoldExpiry, SeatsService

SEND_SECONDS = 0.05


class LoggingSender:
    """Sends on the seats service's bus, logging each command first."""

    def __init__(self, log: Path) -> None:
        self.runner: ProcessRunner | None = None
        self.bus = BusSender(SeatsService().bus)
        self.fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND)

    def send(self, command_type: str, payload: dict[str, Any], command_id: UUID) -> Any:
        return self.send_many([(command_type, payload, command_id)])[0]

    def send_many(self, batch: Batch, traces: Traces | None = None) -> list[Any]:
        owned = len(self.runner.owned) if self.runner else 0
        at = time.time()
        lines = "".join(
            f"{t} {p['booking_id']} {i} {owned} {at:.3f}\n" for t, p, i in batch
        )
        os.write(self.fd, lines.encode())
        time.sleep(SEND_SECONDS)
        return send_batch(self.bus, batch, traces)


def main(schema: str, name: str, out: Path) -> None:
    settings = load_settings(
        {"postgres_dbname": "ordersys_test", "postgres_schema": schema}
    )
    sender = LoggingSender(out / f"{name}.sent")
    runner = sender.runner = ProcessRunner(
        HoldExpiry(settings), [Bookings(settings)], sender
    )
    runner.start(poll_interval=0.02)
    status = out / f"{name}.json"
    while True:
        state = {"owned": sorted(runner.owned), "takeovers": runner.takeovers}
        status.with_suffix(".tmp").write_text(json.dumps(state))
        status.with_suffix(".tmp").replace(status)
        time.sleep(0.05)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], Path(sys.argv[3]))
