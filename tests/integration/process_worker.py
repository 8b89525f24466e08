"""A process-manager process for the restart test.

``python -m tests.integration.process_worker <schema> <minutes ahead> <log>``
runs the hold-expiry process with its clock that many minutes ahead, appends
each command the seats service handles to <log>, prints "idle" when nothing is
left to do, and then waits to be killed.
"""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ordersys.processes import BusSender, ProcessRunner
from ordersys.settings import load_settings
from tests.unit.bookings import Bookings, HoldExpiry, SeatsService


def main(schema: str, minutes_ahead: int, log: Path) -> None:
    settings = load_settings(
        {"postgres_dbname": "ordersys_test", "postgres_schema": schema}
    )
    seats = SeatsService()
    runner = ProcessRunner(
        HoldExpiry(settings),
        [Bookings(settings)],
        BusSender(seats.bus),
        clock=lambda: datetime.now(UTC) + timedelta(minutes=minutes_ahead),
    )
    runner.run_until_idle()
    with log.open("a") as out:
        for what, booking_id in seats.handled:
            out.write(f"{what} {booking_id}\n")
    print("idle", flush=True)
    time.sleep(3600)


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), Path(sys.argv[3]))
