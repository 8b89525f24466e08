"""A simulated payment provider: approves or declines after some latency.

Its decline rate and latency are settings of the payments service; a seeded
random source makes a run repeatable.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass
from uuid import UUID, uuid4


@dataclass(frozen=True)
class Charge:
    """The provider's answer: approved with a reference, or declined with a reason."""

    approved: bool
    reference: str = ""
    reason: str = ""


class SimulatedProvider:
    def __init__(
        self, decline_rate: float = 0.0, latency: float = 0.0, seed: int | None = None
    ) -> None:
        if not 0.0 <= decline_rate <= 1.0:
            msg = f"decline_rate must be between 0 and 1, not {decline_rate}"
            raise ValueError(msg)
        self.decline_rate = decline_rate
        self.latency = latency
        self._random = random.Random(seed)
        self._lock = threading.Lock()

    def charge(self, order_id: UUID, amount_cents: int) -> Charge:
        if self.latency:
            time.sleep(self.latency)
        with self._lock:
            declined = self._random.random() < self.decline_rate
        if declined:
            return Charge(False, reason=f"card declined for {amount_cents} cents")
        return Charge(True, reference=f"sim-{order_id.hex[:8]}-{uuid4().hex[:8]}")
