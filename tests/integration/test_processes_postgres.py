"""Process managers on the real PostgreSQL: a deadline survives kill -9."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

from ordersys.settings import Settings
from tests.unit.bookings import Booking, Bookings, Hold, HoldExpiry

ROOT = Path(__file__).resolve().parents[2]


def run_and_kill(schema: str, minutes_ahead: int, log: Path) -> None:
    """Run the process until it is idle, then kill -9 it."""
    worker = ["tests.integration.process_worker", schema, str(minutes_ahead), str(log)]
    process = subprocess.Popen(
        [sys.executable, "-m", *worker],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "idle"
    process.send_signal(signal.SIGKILL)
    process.wait()


def test_a_deadline_set_before_a_kill_fires_once_after_the_restart(
    pg_settings: Settings, tmp_path: Path
) -> None:
    schema, log = pg_settings.postgres_schema, tmp_path / "handled.log"
    booking = Booking("concert")
    Bookings(pg_settings).write(booking)

    run_and_kill(schema, 0, log)
    pending = HoldExpiry(pg_settings).saga(Hold, booking.id)
    run_and_kill(schema, 20, log)
    run_and_kill(schema, 60, log)

    assert pending is not None
    assert list(pending.deadlines) == ["payment"]
    assert log.read_text().splitlines() == [
        f"hold {booking.id}",
        f"release {booking.id}",
    ]
    hold = HoldExpiry(pg_settings).saga(Hold, booking.id)
    assert hold is not None
    assert (hold.status, hold.reason) == ("failed", "payment not received in time")
