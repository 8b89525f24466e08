"""Testing helpers for services built with ordersys, shipped with it.

- :func:`given` / :func:`when`: an aggregate's history, a command method, the
  new events or the error (:mod:`ordersys.testing.aggregates`);
- :class:`ProjectionScenario`: given events, then this read model;
- :class:`SagaScenario`: given upstream events and scripted replies, then these
  commands sent; time passes, then the deadline fires;
- :class:`VirtualClock`: one time for event timestamps and deadlines;
- :class:`RecordingSender`: a command sender that records and replies as told;
- :func:`eventually`: a bounded wait for asynchronous work.

The contract suites of each port (event store, transport, read-model store,
cache) are in :mod:`ordersys.testing.contracts`; they need pytest.
"""

from __future__ import annotations

from ordersys.testing.aggregates import Given, Outcome, given, when
from ordersys.testing.clock import VirtualClock
from ordersys.testing.eventually import eventually
from ordersys.testing.payloads import payload
from ordersys.testing.processes import SagaScenario
from ordersys.testing.projections import ProjectionScenario
from ordersys.testing.sender import RecordingSender, Sent

__all__ = [
    "Given",
    "Outcome",
    "ProjectionScenario",
    "RecordingSender",
    "SagaScenario",
    "Sent",
    "VirtualClock",
    "eventually",
    "given",
    "payload",
    "when",
]
