"""A bounded wait for asynchronous work, for tests."""

from __future__ import annotations

import time
from collections.abc import Callable


def eventually(condition: Callable[[], bool], within: float = 10.0) -> bool:
    """Poll ``condition`` until it holds or ``within`` seconds pass; whether it
    held. A bound on waiting for a delivery, never a speed assertion."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True
