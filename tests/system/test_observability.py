"""Observability of the running system: every service's /metrics, the real
Prometheus scraping them, the dashboards' and alerts' metrics among what the
services export, and one order's trace across the services."""

from __future__ import annotations

import json
import subprocess
import threading
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from prometheus_client.parser import text_string_to_metric_families

from tests.deploy.test_dashboards import CONTRACT, metric_names
from tests.system.system import System, eventually, free_port

EXPECTED = {
    "users": {"ordersys_messages_total", "ordersys_relay_lag"},
    "catalog": {"ordersys_message_seconds_bucket", "ordersys_projection_lag"},
    "payments": {"ordersys_messages_total", "ordersys_events_appended_total"},
    "gateway": {"ordersys_http_requests_total", "ordersys_http_request_seconds_bucket"},
    "orders": {
        "ordersys_sagas",
        "ordersys_saga_seconds_bucket",
        "ordersys_saga_deadlines_overdue",
        "ordersys_relay_lag",
        "ordersys_projection_lag",
    },
    "notifications": {
        "ordersys_consumer_queue_depth",
        "ordersys_dead_letters",
        "ordersys_consumer_messages_total",
    },
    "analytics": {"ordersys_consumer_queue_depth", "ordersys_dead_letters"},
}


def scrape(port: int) -> dict[str, list[Any]]:
    """Sample name → samples, from a /metrics page."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    samples: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


@pytest.fixture
def observed(system: System) -> System:
    system.start(metrics=True)
    order_id = order_through_the_gateway(system, system.product(stock=5))
    system.final([order_id])
    return system


def test_every_service_exports_its_figures(observed: System) -> None:
    def exported() -> dict[str, set[str]] | None:
        missing = {
            name: wanted - set(scrape(observed.metrics_ports[name]))
            for name, wanted in EXPECTED.items()
        }
        return None if any(missing.values()) else missing

    eventually(exported, within=20)
    orders = scrape(observed.metrics_ports["orders"])
    completed = [
        s for s in orders["ordersys_sagas"] if s.labels["status"] == "completed"
    ]
    assert [s.value for s in completed] == [1.0]
    created = [
        s
        for s in orders["ordersys_messages_total"]
        if s.labels["message_type"] == "order.create"
    ]
    assert [(s.labels["outcome"], s.value) for s in created] == [("ok", 1.0)]
    assert "process_resident_memory_bytes" in orders


@pytest.fixture
def prometheus(observed: System, tmp_path: Path) -> Iterator[str]:
    """The real Prometheus scraping every service once a second."""
    jobs = [
        {
            "job_name": name,
            "static_configs": [{"targets": [f"127.0.0.1:{port}"]}],
        }
        for name, port in observed.metrics_ports.items()
    ]
    config = tmp_path / "prometheus.yml"
    config.write_text(
        json.dumps({"global": {"scrape_interval": "1s"}, "scrape_configs": jobs})
    )
    port = free_port()
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(30)


def api(base: str, path: str) -> Any:
    try:
        with urllib.request.urlopen(f"{base}{path}", timeout=5) as reply:
            return json.loads(reply.read())["data"]
    except OSError:
        return None


def test_prometheus_scrapes_every_service_and_finds_the_key_series(
    prometheus: str, observed: System
) -> None:
    seen: list[Any] = []

    def all_up() -> list[Any] | None:
        targets = (api(prometheus, "/api/v1/targets") or {}).get("activeTargets", [])
        seen[:] = [(t["labels"]["job"], t["health"], t["lastError"]) for t in targets]
        healthy = [t for t in targets if t["health"] == "up"]
        return targets if len(healthy) == len(observed.metrics_ports) else None

    try:
        targets = eventually(all_up, within=40)
    except AssertionError:
        pytest.fail(f"targets not all up: {seen}")
    assert {t["labels"]["job"] for t in targets} == set(observed.metrics_ports)
    for name, wanted in EXPECTED.items():
        for series in wanted:
            query = urllib.parse.quote(f'{series}{{job="{name}"}}')
            found = eventually(
                lambda q=query: (api(prometheus, f"/api/v1/query?query={q}") or {}).get(
                    "result"
                ),
                within=20,
            )
            assert found, (name, series)


def test_dashboards_and_alerts_use_only_metrics_the_services_export(
    observed: System,
) -> None:
    exported = {"up"}
    for port in observed.metrics_ports.values():
        exported |= set(scrape(port))

    used = metric_names()

    assert len(used) > 15
    assert used - exported == set()
    assert CONTRACT - exported == set()


class _Collector(BaseHTTPRequestHandler):
    """A small OTLP/HTTP receiver: keeps every span it is sent."""

    spans: list[dict[str, Any]]

    def do_POST(self) -> None:
        request = ExportTraceServiceRequest.FromString(
            self.rfile.read(int(self.headers["Content-Length"]))
        )
        for resource_spans in request.resource_spans:
            service = next(
                a.value.string_value
                for a in resource_spans.resource.attributes
                if a.key == "service.name"
            )
            for scope in resource_spans.scope_spans:
                for span in scope.spans:
                    type(self).spans.append(
                        {
                            "service": service,
                            "name": span.name,
                            "trace": span.trace_id.hex(),
                            "id": span.span_id.hex(),
                            "parent": span.parent_span_id.hex(),
                        }
                    )
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[tuple[str, list[dict[str, Any]]]]:
    handler = type("Collector", (_Collector,), {"spans": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}", handler.spans
    server.shutdown()


def order_through_the_gateway(system: System, product: str) -> str:
    """Register, log in and place an order over HTTP; the order's id."""
    email = f"traced-{uuid.uuid4().hex[:8]}@example.com"
    with httpx.Client(base_url=f"http://127.0.0.1:{system.gateway_port}") as client:
        client.post(
            "/auth/register",
            json={"email": email, "name": "Traced", "password": "traced-pw-1"},
        ).raise_for_status()
        login = client.post(
            "/auth/login", json={"email": email, "password": "traced-pw-1"}
        )
        token = login.json()["access_token"]
        placed = client.post(
            "/orders",
            json={"items": [{"product_id": product, "quantity": 1}], "submit": True},
            headers={"Authorization": f"Bearer {token}"},
        )
        placed.raise_for_status()
        return str(placed.json()["id"])


def test_one_order_is_one_trace_from_the_gateway_across_the_services(
    system: System, collector: tuple[str, list[dict[str, Any]]]
) -> None:
    endpoint, spans = collector
    system.start(otlp_endpoint=endpoint)
    order_id = order_through_the_gateway(system, system.product(stock=5))
    system.final([order_id])

    services = {
        "gateway",
        "orders",
        "catalog",
        "payments",
        "notifications",
        "analytics",
    }

    def traced() -> list[dict[str, Any]] | None:
        roots = [s for s in spans if s["name"] == "POST /orders" and not s["parent"]]
        if not roots:
            return None
        trace = [s for s in spans if s["trace"] == roots[0]["trace"]]
        ids = {s["id"] for s in trace}
        complete = all(s["parent"] in ids for s in trace if s["parent"])
        # Each process exports its spans in its own time, a parent after its
        # children: wait until every service has sent its part.
        return trace if services <= {s["service"] for s in trace} and complete else None

    trace = eventually(traced, within=30)

    ids = {s["id"] for s in trace}
    roots = [s for s in trace if not s["parent"]]
    assert [(r["service"], r["name"]) for r in roots] == [("gateway", "POST /orders")]
    assert all(s["parent"] in ids for s in trace if s["parent"]), trace
    names = {s["name"] for s in trace}
    assert {
        "handle order.create",
        "append Orders",
        "handle product.reserveInventory",
        "handle payment.capture",
        "relay OrderConfirmed",
        "handle OrderConfirmed",
    } <= names
    assert any(n.startswith("OrderProcess sends") for n in names)
