"""A consumer process for the crash test: ``python -m
tests.integration.consumer_worker <schema> <prefix>`` consumes the ledger's
queue, slowly, until it is killed."""

from __future__ import annotations

import sys
import time

from ordersys.readmodels.records import Records
from ordersys.settings import load_settings
from ordersys.transport import Envelope
from tests.integration.test_messaging_rabbitmq import Ledger


class SlowLedger(Ledger):
    """Takes a while per event, so that a kill finds a batch half applied."""

    def record(self, envelope: Envelope, records: Records) -> None:
        time.sleep(0.002)
        super().record(envelope, records)


def main(schema: str, prefix: str) -> None:
    settings = load_settings(
        {"postgres_dbname": "ordersys_test", "postgres_schema": schema}
    )
    SlowLedger(settings, prefix).consumer.start()
    print("started", flush=True)
    while True:
        time.sleep(1)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
