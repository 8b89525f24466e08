"""A relay process for the crash test: ``python -m tests.integration.relay_worker
<schema> <prefix>`` relays the example bank's events until none is left."""

from __future__ import annotations

import sys

from ordersys.messaging.publisher import ConfirmedPublisher
from ordersys.messaging.relay import Relay
from ordersys.settings import load_settings
from tests.integration.test_messaging_rabbitmq import INTEGRATION_EVENTS, URL
from tests.unit.accounts import Bank


def main(schema: str, prefix: str) -> None:
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
    print("started", flush=True)
    while relay.run_once():
        pass
    print("done", flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
