"""When a worker reached each position of the event store it follows.

A relay's checkpoint and a projection's tracking say how far they got, not
when. The operator console shows how long an event took to be published or to
reach a read model, so the workers note the time as they pass each position:
in memory, bounded (the recent past is what an operator asks about), and lost
on restart, when the answer becomes "reached, time not known".
"""

from __future__ import annotations

import bisect
import threading
from datetime import UTC, datetime

KEPT = 100_000
"""How many (position, time) marks a worker keeps."""


class Milestones:
    """Positions reached, each with the time it was reached."""

    def __init__(self, kept: int = KEPT) -> None:
        self.kept = kept
        self._positions: list[int] = []
        self._times: list[datetime] = []
        self._forgotten = 0
        self._lock = threading.Lock()

    def reached(self, position: int) -> None:
        """Note that every position up to ``position`` is done, now."""
        with self._lock:
            if self._positions and position <= self._positions[-1]:
                return
            self._positions.append(position)
            self._times.append(datetime.now(UTC))
            if len(self._positions) > self.kept:
                # Forget the older half at once: trimming one at a time
                # would copy the lists on every mark.
                self._forgotten = self._positions[self.kept // 2 - 1]
                del self._positions[: self.kept // 2]
                del self._times[: self.kept // 2]

    def time_of(self, position: int) -> datetime | None:
        """When ``position`` was first covered, if it still is remembered."""
        with self._lock:
            index = bisect.bisect_left(self._positions, position)
            if index == len(self._positions) or position <= self._forgotten:
                return None
            return self._times[index]
