"""The time ordersys stamps events with and decides deadlines by.

It is the system clock (UTC), unless a test installs another with
:func:`using` (``ordersys.testing.VirtualClock`` does): then events, saga
deadlines and process runners all read that one clock, so a test that starts
in 1999 and moves time on by an hour sees its deadlines fire.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

Clock = Callable[[], datetime]
"""Returns the current time, timezone-aware."""


def system_clock() -> datetime:
    """The real time, in UTC."""
    return datetime.now(UTC)


# One clock for the process, not per context: runner threads must read the
# clock their test installed.
_current: Clock = system_clock


def now() -> datetime:
    """The current time by the installed clock."""
    return _current()


def current() -> Clock:
    """The installed clock."""
    return _current


@contextmanager
def using(clock: Clock) -> Iterator[Clock]:
    """Make ``clock`` ordersys' clock until the block ends."""
    global _current
    previous, _current = _current, clock
    try:
        yield clock
    finally:
        _current = previous
