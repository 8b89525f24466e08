"""A projection process for the crash test: counts how often each event is applied.

Run as ``python -m tests.integration.projection_worker <schema>``; it applies
events slowly, in batches, until none is left, and can be killed at any moment.
"""

from __future__ import annotations

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
        docs.put("applied", key, {"times": (seen or {"times": 0})["times"] + 1})


def main(schema: str) -> None:
    settings = load_settings(
        {
            "postgres_dbname": "ordersys_test",
            "postgres_schema": schema,
            "projection_batch_size": 50,
        }
    )
    runner = ProjectionRunner(AppliedCounts, Bank(settings))
    print("started", flush=True)
    runner.catch_up()
    print("caught up", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
