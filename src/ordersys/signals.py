"""Ctrl-C and SIGTERM as a stop request that a process's threads can wait for."""

from __future__ import annotations

import contextlib
import os
import signal
import threading


def stop_on_signals(stopping: threading.Event) -> None:
    """Ctrl-C and SIGTERM set ``stopping``, also where SIGINT was inherited as
    ignored (a background job of a non-interactive shell).

    The handler only writes a byte to a pipe, and a thread of its own sets
    the event: a handler runs on the main thread between two of its
    bytecodes, and setting the event there would deadlock whenever the main
    thread was inside one of the event's methods, holding its lock (as it is,
    briefly, every time ``stopping.wait()`` begins or ends)."""
    read, write = os.pipe()
    os.set_blocking(write, False)

    def relay() -> None:
        os.read(read, 1)
        stopping.set()

    def handler(*_: object) -> None:
        # A full pipe already holds a stop request.
        with contextlib.suppress(BlockingIOError):
            os.write(write, b"\0")

    threading.Thread(target=relay, name="stop-on-signals", daemon=True).start()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, handler)
