"""The overview: every service, its replicas and rates, dead letters,
projection lag and sagas, in one snapshot."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry

from ordersys.shop.gateway.console.probes import (
    BACKENDS,
    ask_each,
    count_queues,
    letter_queues,
    service_queue,
)
from ordersys.shop.gateway.context import Gateway

HTTP_REQUESTS = "ordersys_http_requests_total"
MIN_INTERVAL = 0.5
"""Seconds between two samples of a counter below which no rate is given."""


@dataclass
class Rates:
    """Requests and errors per second of each instance, from the difference
    between its counters now and at the previous look."""

    samples: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    def of(self, instance: str, requests: float, errors: float) -> dict[str, Any]:
        now = time.monotonic()
        before = self.samples.get(instance)
        self.samples[instance] = (now, requests, errors)
        if before is None or now - before[0] < MIN_INTERVAL:
            return {"requests_per_second": None, "errors_per_second": None}
        elapsed = now - before[0]
        return {
            "requests_per_second": max(requests - before[1], 0) / elapsed,
            "errors_per_second": max(errors - before[2], 0) / elapsed,
        }


def http_counts(registry: CollectorRegistry | None) -> tuple[float, float]:
    """The gateway's requests and server errors so far."""
    requests = errors = 0.0
    for metric in registry.collect() if registry is not None else ():
        for sample in metric.samples:
            if sample.name == HTTP_REQUESTS:
                requests += sample.value
                if sample.labels.get("status", "").startswith("5"):
                    errors += sample.value
    return requests, errors


async def overview(
    gw: Gateway, rates: Rates, registry: CollectorRegistry | None
) -> dict[str, Any]:
    queues = await gw.backend.run(letter_queues, gw)
    service_queues = [service_queue(gw, s) for s in BACKENDS]
    counts = await gw.backend.run(
        count_queues, gw, [*service_queues, *(f"{q}.dlq" for q in queues)]
    )
    up = [
        s
        for s, q in zip(BACKENDS, service_queues, strict=True)
        if _consumers(counts.get(q))
    ]
    statuses = await ask_each(gw, up, "ops.status")
    services = [_gateway_row(rates, registry)]
    for name, queue in zip(BACKENDS, service_queues, strict=True):
        services.append(
            _service_row(name, counts.get(queue), statuses.get(name), rates)
        )
    answered = [s for s in statuses.values() if isinstance(s, dict)]
    return {
        "services": services,
        "dead_letters": [
            {"queue": q, "count": c.messages}
            for q in queues
            if (c := counts.get(f"{q}.dlq")) is not None
        ],
        "projections": [
            {"service": s["service"], **p} for s in answered for p in s["projections"]
        ],
        "relays": [
            {"service": s["service"], **r} for s in answered for r in s["relays"]
        ],
        "sagas": [{"service": s["service"], **g} for s in answered for g in s["sagas"]],
    }


def _consumers(count: Any) -> int:
    return int(count.consumers) if count is not None else 0


def _gateway_row(rates: Rates, registry: CollectorRegistry | None) -> dict[str, Any]:
    requests, errors = http_counts(registry)
    return {
        "name": "gateway",
        "up": True,
        "replicas": None,  # this process answers; others are not counted here
        "waiting": 0,
        "instance": "this gateway",
        **rates.of("gateway", requests, errors),
    }


def _service_row(name: str, count: Any, status: Any, rates: Rates) -> dict[str, Any]:
    row: dict[str, Any] = {
        "name": name,
        "up": _consumers(count) > 0 and isinstance(status, dict),
        "replicas": _consumers(count),
        "waiting": count.messages if count is not None else 0,
        "instance": "",
        "requests_per_second": None,
        "errors_per_second": None,
        "problem": "" if isinstance(status, dict) or status is None else str(status),
    }
    if isinstance(status, dict):
        row["instance"] = status["instance"]
        row.update(rates.of(status["instance"], status["requests"], status["errors"]))
    return row
