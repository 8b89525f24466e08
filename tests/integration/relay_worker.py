"""A relay process for the crash and replica tests.

``python -m tests.integration.relay_worker <schema> <prefix>`` relays the
example bank's events until none is left. With a third argument, ``replica``,
it runs the relay's thread as a replica of a service does, until it is killed,
and prints ``active`` once its relay holds the lease.
"""

from __future__ import annotations

import sys
import time

from ordersys.messaging.publisher import ConfirmedPublisher
from ordersys.messaging.relay import Relay
from ordersys.settings import load_settings
from tests.integration.test_messaging_rabbitmq import INTEGRATION_EVENTS, URL
from tests.unit.accounts import Bank


def report_when_active(relay: Relay) -> None:
    """Print ``active`` once the relay holds its lease."""
    while not (relay.leases and relay.leases.holding):
        time.sleep(0.02)
    print("active", flush=True)


def main(schema: str, prefix: str, mode: str = "") -> None:
    settings = load_settings(
        {"postgres_dbname": "ordersys_test", "postgres_schema": schema}
    )
    relay = Relay(
        Bank(settings),
        "bank",
        ConfirmedPublisher(URL, f"{prefix}.events"),
        integration_events=INTEGRATION_EVENTS,
        batch_size=50,
    )
    if mode == "replica":
        relay.start()
        print("started", flush=True)
        report_when_active(relay)
        time.sleep(600)
        return
    print("started", flush=True)
    while relay.run_once():
        pass
    print("done", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
