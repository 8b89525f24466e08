"""Crash points, for tests that prove recovery.

``ORDERSYS_CRASH_AT`` names points (e.g. ``catalog.reserved``); a process that
reaches one SIGKILLs itself there, exactly as ``kill -9`` would at that instant:
no ``finally`` blocks, no reply, no clean shutdown. A test starts a service with
the setting, waits for it to die, and restarts it without. Empty in production.
"""

from __future__ import annotations

import logging
import os
import signal

from ordersys.settings import Settings

logger = logging.getLogger("ordersys.faults")

POINTS = {
    "catalog.reserved": "the catalog has saved a reservation and not replied yet",
    "payments.captured": "the payments service has saved a capture and not replied",
    "orders.confirming": "the orders service is about to save an order's confirmation",
}
"""Every crash point, with what has happened when a process reaches it."""


def crash_point(settings: Settings, point: str) -> None:
    """SIGKILL this process if ``point`` is one of ``settings.crash_at``."""
    if point in settings.crash_at:
        logger.warning("crash point %s reached: killing this process", point)
        os.kill(os.getpid(), signal.SIGKILL)
