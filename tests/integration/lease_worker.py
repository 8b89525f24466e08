"""A process holding a lease until it is killed:
``python -m tests.integration.lease_worker <schema> <name>`` prints ``held``
once it holds lease ``name`` (or ``refused``, and exits)."""

from __future__ import annotations

import sys
import time

from ordersys.leases import Leases
from ordersys.settings import load_settings


def main(schema: str, name: str) -> None:
    settings = load_settings(
        {"postgres_dbname": "ordersys_test", "postgres_schema": schema}
    )
    leases = Leases(settings, "lease worker")
    if not leases.claim(name):
        print("refused", flush=True)
        return
    print("held", flush=True)
    time.sleep(120)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
