"""Ctrl-C as a stop request: the event is set, whatever the main thread was
doing when the signal came, even inside one of the event's own methods."""

from __future__ import annotations

import subprocess
import sys
import textwrap

# The main thread holds the event's lock (as ``stopping.wait()`` does while it
# begins and ends) when the signal comes; a handler that set the event itself
# would wait for that lock on the thread that holds it, forever.
CHILD = textwrap.dedent(
    """
    import os, signal, threading, time
    from ordersys.signals import stop_on_signals

    stopping = threading.Event()
    stop_on_signals(stopping)
    with stopping._cond:
        os.kill(os.getpid(), signal.{signal})
        time.sleep(0.2)  # the handler has run meanwhile
    print("stopped" if stopping.wait(5) else "not stopped", flush=True)
    """
)


def stopped_by(signal: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", CHILD.format(signal=signal)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_a_signal_that_comes_while_the_event_is_locked_stops_the_process() -> None:
    # When SIGINT, then SIGTERM, come while the main thread holds the lock
    # of the event it waits on
    outcomes = [stopped_by(name) for name in ("SIGINT", "SIGTERM")]

    # Then each process goes on, and the event is set once it lets go
    assert [(o.returncode, o.stdout, o.stderr) for o in outcomes] == [
        (0, "stopped\n", "")
    ] * 2
