"""A virtual clock: time that moves only when a test moves it."""

from __future__ import annotations

from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from typing import Self

from ordersys import clock


class VirtualClock:
    """Time for tests. Installed with ``with``, it is ordersys' clock: the
    events created in the block take their timestamps from it, and process
    runners fire deadlines by it, so both move together whatever the date it
    starts at::

        with VirtualClock(datetime(1999, 12, 31, 23, 50, tzinfo=UTC)) as clock:
            ...
            clock.advance(timedelta(minutes=15))
    """

    def __init__(self, start: datetime) -> None:
        if start.tzinfo is None:
            msg = "a virtual clock starts at a timezone-aware time (tzinfo=UTC)"
            raise ValueError(msg)
        self._now = start
        self._installed: AbstractContextManager[object] | None = None

    def __call__(self) -> datetime:
        """The virtual time now."""
        return self._now

    def advance(self, by: timedelta) -> datetime:
        """Move time on by ``by``; returns the new time."""
        if by < timedelta(0):
            msg = f"time does not go back (advance by {by})"
            raise ValueError(msg)
        self._now += by
        return self._now

    @property
    def installed(self) -> bool:
        """Whether this clock is ordersys' clock now."""
        return clock.current() is self

    def __enter__(self) -> Self:
        self._installed = clock.using(self)
        self._installed.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._installed is not None:
            self._installed.__exit__(None, None, None)
            self._installed = None
