"""A stand-in for ``python -m ordersys.shop.cli run <service>`` in the
launcher's tests: says it is ready as the replica it was told it is, with the
metrics port it was given, then waits to be stopped."""

from __future__ import annotations

import os
import signal
import sys
import threading

from ordersys.replicas import replica_name


def main() -> None:
    _, service = sys.argv[1:3]
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    name = replica_name(service, os.environ)
    port = os.environ.get("ORDERSYS_METRICS_PORT", "0")
    print(f"{name} ready, metrics on {port}, pid {os.getpid()}", flush=True)
    stopping.wait()
    print(f"{name} stopped", flush=True)


if __name__ == "__main__":
    main()
