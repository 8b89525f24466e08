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
from typing import Any
from uuid import UUID

from ordersys.processes import Batch, CommandSender, Outcome, Traces, send_batch
from ordersys.settings import Settings
from ordersys.shop.settings import ShopSettings

logger = logging.getLogger("ordersys.shop.faults")

POINTS = {
    "catalog.reserved": "the catalog has saved a reservation and not replied yet",
    "payments.captured": "the payments service has saved a capture and not replied",
    "orders.confirming": "the orders service is about to save an order's confirmation",
    "orders.reserved": "the order saga has the catalog's reservation reply, unrecorded",
    "orders.captured": "the order saga has the payment's capture reply, unrecorded",
}
"""Every crash point, with what has happened when a process reaches it."""


def crash_point(settings: Settings, point: str) -> None:
    """SIGKILL this process if ``point`` is one of ``settings.crash_at``.

    ``settings`` are an application's: one built with the framework's settings
    alone (a test's, say) has no crash points.
    """
    if isinstance(settings, ShopSettings) and point in settings.crash_at:
        logger.warning("crash point %s reached: killing this process", point)
        os.kill(os.getpid(), signal.SIGKILL)


class CrashingSender:
    """A :class:`CommandSender` that reaches ``<service>.<step>`` crash points
    once a reply to ``steps[message_type]`` is in hand, before the saga records it
    (for a batch: once the replies to the whole batch are)."""

    def __init__(
        self,
        inner: CommandSender,
        settings: ShopSettings,
        service: str,
        steps: dict[str, str],
    ) -> None:
        self.inner = inner
        self.settings = settings
        self.points = {t: f"{service}.{step}" for t, step in steps.items()}

    def send(self, command_type: str, payload: dict[str, Any], command_id: UUID) -> Any:
        result = self.inner.send(command_type, payload, command_id)
        if command_type in self.points:
            crash_point(self.settings, self.points[command_type])
        return result

    def send_many(self, batch: Batch, traces: Traces | None = None) -> list[Outcome]:
        outcomes = send_batch(self.inner, batch, traces)
        for (command_type, _, _), outcome in zip(batch, outcomes, strict=True):
            if command_type in self.points and not isinstance(outcome, Exception):
                crash_point(self.settings, self.points[command_type])
        return outcomes
