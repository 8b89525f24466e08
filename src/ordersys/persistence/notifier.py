"""Waking subscribers after appends without a NOTIFY inside every append.

A ``NOTIFY`` issued inside a transaction takes a database-wide lock at commit,
which would serialize every writer. Writers instead call
:meth:`ThrottledNotifier.notify` after they have committed; a background thread
then sends one ``NOTIFY`` on its own short transaction, at most once per
``interval``, however many appends asked for it. Subscribers also poll, so a
lost wake-up only delays them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


class ThrottledNotifier:
    """Calls ``send`` soon after :meth:`notify`, at most once per ``interval``.

    The thread that sends exists only while there is work: it ends after
    ``idle_timeout`` seconds without a request, so an idle recorder holds no
    thread and no connection.
    """

    def __init__(
        self,
        send: Callable[[], None],
        interval: float = 0.005,
        idle_timeout: float = 1.0,
    ) -> None:
        self._send = send
        self._interval = interval
        self._idle_timeout = idle_timeout
        self._lock = threading.Lock()
        self._requested = threading.Event()
        self._thread: threading.Thread | None = None

    def notify(self) -> None:
        """Ask for one NOTIFY, sent after every append that committed so far."""
        if self._requested.is_set():
            return  # a NOTIFY is due already, and it will be sent after now
        self._requested.set()
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name="ordersys-notifier", daemon=True
                )
                self._thread.start()

    def _run(self) -> None:
        while True:
            if not self._requested.wait(self._idle_timeout):
                with self._lock:
                    # A request may have arrived between the timeout and the lock.
                    if not self._requested.is_set():
                        self._thread = None
                        return
            self._requested.clear()
            try:
                self._send()
            except Exception:
                # Subscribers poll as well, so a failed wake-up only delays them.
                log.debug("could not notify subscribers", exc_info=True)
            # Appends that commit during this pause share the next NOTIFY.
            time.sleep(self._interval)
