"""A projection process for the crash and replica tests: counts how often each
event is applied, and by which process.

Run as ``python -m tests.integration.projection_worker <schema>``; it applies
events slowly, in batches, until none is left, and can be killed at any moment.
With a second argument, ``replica``, it runs the runner's thread as a replica
of a service does, until it is killed, and prints ``active`` once its runner
holds the lease.
"""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from ordersys.projections import Projection, ProjectionRunner
from ordersys.readmodels import Documents
from ordersys.settings import load_settings
from tests.unit.accounts import Bank

SLOW_APPLY_SECONDS = 0.002


class AppliedCounts(Projection):
    name = "applied_counts"

    def apply(self, domain_event: Any, docs: Documents) -> None:
        time.sleep(SLOW_APPLY_SECONDS)
        key = f"{domain_event.originator_id}:{domain_event.originator_version}"
        seen = docs.get("applied", key)
        times = (seen or {"times": 0})["times"] + 1
        docs.put("applied", key, {"times": times, "by": os.getpid()})


def main(schema: str, mode: str = "") -> None:
    settings = load_settings(
        {
            "postgres_dbname": "ordersys_test",
            "postgres_schema": schema,
            "projection_batch_size": 50,
        }
    )
    runner = ProjectionRunner(AppliedCounts, Bank(settings))
    print("started", flush=True)
    if mode == "replica":
        runner.start()
        while not (runner.leases and runner.leases.holding):
            time.sleep(0.02)
        print("active", flush=True)
        time.sleep(600)
        return
    runner.catch_up()
    print("caught up", flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:])
