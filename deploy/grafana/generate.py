"""Writes the Grafana dashboards of deploy/grafana/dashboards/ from one description.

    python deploy/grafana/generate.py          # rewrite the JSON files
    python deploy/grafana/generate.py --check  # exit 1 if a file differs

The dashboards are provisioned by deploy/docker-compose.yml (read-only in
Grafana): change a dashboard here, run this script, and commit both. Only the
metrics of the metrics contract appear (docs/operations.md);
tests/deploy/test_dashboards.py checks every expression against it, and that
the JSON files are this script's output. Standard library only.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}
RATE = "$__rate_interval"
INFRA_OUTCOMES = "error|unavailable|timeout"
SERVICES = (
    "gateway",
    "users",
    "catalog",
    "orders",
    "payments",
    "notifications",
    "analytics",
)

Panel = dict[str, Any]


# --- panels ------------------------------------------------------------------


def target(expr: str, legend: str = "", ref: str = "A", **extra: Any) -> dict[str, Any]:
    return {
        "datasource": DATASOURCE,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "refId": ref,
        **extra,
    }


def targets(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    return [
        target(expr, legend, chr(ord("A") + i))
        for i, (expr, legend) in enumerate(pairs)
    ]


def timeseries(
    title: str,
    *queries: tuple[str, str],
    unit: str = "short",
    description: str = "",
    width: int = 12,
    height: int = 8,
    stack: bool = False,
    minimum: float | None = 0,
) -> Panel:
    defaults: dict[str, Any] = {
        "unit": unit,
        "custom": {
            "drawStyle": "line",
            "lineWidth": 1,
            "fillOpacity": 20 if stack else 5,
            "showPoints": "never",
            "spanNulls": False,
            "stacking": {"mode": "normal" if stack else "none", "group": "A"},
        },
    }
    if minimum is not None:
        defaults["min"] = minimum
    return {
        "type": "timeseries",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"w": width, "h": height},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "legend": {
                "displayMode": "table",
                "placement": "bottom",
                "calcs": ["mean", "max", "lastNotNull"],
                "showLegend": True,
            },
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
        "targets": targets(*queries),
    }


def stat(
    title: str,
    expr: str,
    legend: str = "",
    *,
    unit: str = "short",
    description: str = "",
    red_from: float | None = None,
    red_below: float | None = None,
    width: int = 6,
    height: int = 4,
    decimals: int | None = None,
) -> Panel:
    """A single figure; red at or above ``red_from``, or below ``red_below``."""
    if red_below is not None:
        steps = [
            {"color": "red", "value": None},
            {"color": "green", "value": red_below},
        ]
    elif red_from is not None:
        steps = [
            {"color": "green", "value": None},
            {"color": "red", "value": red_from},
        ]
    else:
        steps = [{"color": "blue", "value": None}]
    defaults: dict[str, Any] = {
        "unit": unit,
        "mappings": [],
        "thresholds": {"mode": "absolute", "steps": steps},
    }
    if decimals is not None:
        defaults["decimals"] = decimals
    return {
        "type": "stat",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"w": width, "h": height},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "background",
            "graphMode": "area",
            "textMode": "auto",
            "orientation": "auto",
            "justifyMode": "auto",
        },
        "targets": [target(expr, legend)],
    }


def heatmap(title: str, expr: str, description: str = "", width: int = 12) -> Panel:
    return {
        "type": "heatmap",
        "title": title,
        "description": description,
        "datasource": DATASOURCE,
        "gridPos": {"w": width, "h": 8},
        "fieldConfig": {"defaults": {}, "overrides": []},
        "options": {
            "calculate": False,
            "yAxis": {"unit": "s", "axisPlacement": "left"},
            "color": {"mode": "scheme", "scheme": "Oranges", "steps": 64},
            "cellGap": 1,
            "tooltip": {"mode": "single", "yHistogram": True},
            "legend": {"show": True},
        },
        "targets": [target(expr, "{{le}}", format="heatmap")],
    }


def row(title: str) -> Panel:
    return {"type": "row", "title": title, "collapsed": False, "panels": []}


def layout(panels: Iterable[Panel]) -> list[Panel]:
    """Place panels left to right, wrapping at Grafana's 24 columns; a row
    starts a new line. Ids follow the order."""
    placed: list[Panel] = []
    x = y = line_height = 0
    for number, panel in enumerate(panels, start=1):
        panel = {"id": number, **panel}
        if panel["type"] == "row":
            if x:
                y += line_height
            panel["gridPos"] = {"x": 0, "y": y, "w": 24, "h": 1}
            y += 1
            x = line_height = 0
        else:
            w, h = panel["gridPos"]["w"], panel["gridPos"]["h"]
            if x + w > 24:
                y += line_height
                x = line_height = 0
            panel["gridPos"] = {"x": x, "y": y, "w": w, "h": h}
            x += w
            line_height = max(line_height, h)
        placed.append(panel)
    return placed


# --- dashboards ---------------------------------------------------------------


@dataclass
class Dashboard:
    uid: str
    title: str
    description: str
    panels: list[Panel]
    job: str | None = None  # a service's dashboard: its `instance` variable
    tags: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        variables = []
        if self.job is not None:
            query = f'label_values(up{{job="{self.job}"}}, instance)'
            variables.append(
                {
                    "name": "instance",
                    "label": "instance",
                    "type": "query",
                    "datasource": DATASOURCE,
                    "definition": query,
                    "query": {"query": query, "refId": "instance"},
                    "includeAll": True,
                    "multi": True,
                    "allValue": ".*",
                    "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
                    "refresh": 2,
                    "sort": 1,
                    "hide": 0,
                    "options": [],
                }
            )
        return {
            "uid": self.uid,
            "title": self.title,
            "description": self.description,
            "tags": ["ordersys", *self.tags],
            "editable": False,
            "graphTooltip": 1,
            "schemaVersion": 39,
            "version": 1,
            "refresh": "30s",
            "time": {"from": "now-1h", "to": "now"},
            "timepicker": {},
            "timezone": "browser",
            "fiscalYearStartMonth": 0,
            "liveNow": False,
            "weekStart": "",
            "annotations": {
                "list": [
                    {
                        "builtIn": 1,
                        "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                        "enable": True,
                        "hide": True,
                        "iconColor": "rgba(0, 211, 255, 1)",
                        "name": "Annotations & Alerts",
                        "type": "dashboard",
                    }
                ]
            },
            "links": [
                {
                    "title": "ordersys",
                    "type": "dashboards",
                    "tags": ["ordersys"],
                    "asDropdown": True,
                    "includeVars": False,
                    "keepTime": True,
                    "icon": "external link",
                    "targetBlank": False,
                    "tooltip": "",
                    "url": "",
                }
            ],
            "templating": {"list": variables},
            "panels": layout(self.panels),
        }


def sel(job: str, extra: str = "") -> str:
    """The selector of one service's series, narrowed to the chosen instances."""
    parts = [f'job="{job}"', 'instance=~"$instance"']
    if extra:
        parts.append(extra)
    return "{" + ", ".join(parts) + "}"


def process_panels(job: str) -> list[Panel]:
    s = sel(job)
    return [
        row("Process"),
        stat(
            "Instances up",
            f"sum(up{s})",
            unit="none",
            red_below=1,
            description="Replicas Prometheus scrapes successfully.",
            width=4,
            height=8,
        ),
        timeseries(
            "CPU",
            (f"rate(process_cpu_seconds_total{s}[{RATE}])", "{{instance}}"),
            unit="percentunit",
            width=10,
        ),
        timeseries(
            "Resident memory",
            (f"process_resident_memory_bytes{s}", "{{instance}}"),
            unit="bytes",
            width=10,
        ),
    ]


def message_panels(job: str) -> list[Panel]:
    s = sel(job)
    failed = sel(job, f'outcome=~"{INFRA_OUTCOMES}"')
    refused = sel(job, f'outcome!~"ok|{INFRA_OUTCOMES}"')
    not_ok = sel(job, 'outcome!="ok"')
    return [
        row("Commands and queries"),
        stat(
            "Messages per second",
            f"sum(rate(ordersys_messages_total{s}[{RATE}]))",
            unit="reqps",
            width=6,
        ),
        stat(
            "Failed (infrastructure)",
            f"sum(rate(ordersys_messages_total{failed}[{RATE}]))"
            f" / sum(rate(ordersys_messages_total{s}[{RATE}]))",
            unit="percentunit",
            red_from=0.05,
            description="Share of messages that ended error, unavailable or timeout.",
            width=6,
        ),
        stat(
            "Refused (domain)",
            f"sum(rate(ordersys_messages_total{refused}[{RATE}]))"
            f" / sum(rate(ordersys_messages_total{s}[{RATE}]))",
            unit="percentunit",
            description="Share of messages refused by a rule: not_found, conflict, "
            "business_rule_violated, invalid_input. A client's problem, not ours.",
            width=6,
        ),
        stat(
            "p95 latency",
            "histogram_quantile(0.95, sum by (le) "
            f"(rate(ordersys_message_seconds_bucket{s}[{RATE}])))",
            unit="s",
            red_from=1,
            width=6,
        ),
        timeseries(
            "Messages per second by type",
            (
                "sum by (kind, message_type) "
                f"(rate(ordersys_messages_total{s}[{RATE}]))",
                "{{kind}} {{message_type}}",
            ),
            unit="reqps",
        ),
        timeseries(
            "Not ok, by type and outcome",
            (
                "sum by (message_type, outcome) "
                f"(rate(ordersys_messages_total{not_ok}[{RATE}]))",
                "{{message_type}} {{outcome}}",
            ),
            unit="reqps",
            description="error, unavailable and timeout are ours; the other codes "
            "are refusals the domain rules decided.",
        ),
        timeseries(
            "Latency p95 by type",
            (
                "histogram_quantile(0.95, sum by (le, message_type) "
                f"(rate(ordersys_message_seconds_bucket{s}[{RATE}])))",
                "{{message_type}}",
            ),
            unit="s",
        ),
        timeseries(
            "Mean latency by type",
            (
                f"sum by (message_type) (rate(ordersys_message_seconds_sum{s}[{RATE}]))"
                " / sum by (message_type) "
                f"(rate(ordersys_message_seconds_count{s}[{RATE}]))",
                "{{message_type}}",
            ),
            unit="s",
        ),
    ]


def event_panels(job: str) -> list[Panel]:
    # The counter is the event store's head, which every replica reads alike.
    s = sel(job)
    return [
        row("Event store"),
        timeseries(
            "Events appended per second",
            (
                "max by (application) "
                f"(rate(ordersys_events_appended_total{s}[{RATE}]))",
                "{{application}}",
            ),
            unit="ops",
            width=24,
        ),
    ]


def relay_panels(job: str) -> list[Panel]:
    s = sel(job)
    return [
        row("Relay (outbox to RabbitMQ)"),
        timeseries(
            "Relay lag",
            (f"max by (relay) (ordersys_relay_lag{s})", "{{relay}}"),
            unit="none",
            description="Events recorded but not yet confirmed by the broker.",
        ),
        timeseries(
            "Events published per second",
            (f"max by (relay) (deriv(ordersys_relay_position{s}[5m]))", "{{relay}}"),
            unit="ops",
            description="How fast the relay's confirmed position moves.",
        ),
    ]


def projection_panels(job: str) -> list[Panel]:
    s = sel(job)
    return [
        row("Read models"),
        timeseries(
            "Projection lag",
            (
                f"max by (projection, application) (ordersys_projection_lag{s})",
                "{{projection}}",
            ),
            unit="none",
            description="Events recorded but not yet applied to the read model.",
        ),
        timeseries(
            "Projection position",
            (
                f"max by (projection, application) (ordersys_projection_position{s})",
                "{{projection}}",
            ),
            unit="none",
            minimum=None,
        ),
    ]


def queue_panels(job: str) -> list[Panel]:
    s = sel(job)
    return [
        row("Queue"),
        timeseries(
            "Messages waiting",
            (f"max by (queue) (ordersys_consumer_queue_depth{s})", "{{queue}}"),
            unit="none",
        ),
        timeseries(
            "Dead letters",
            (f"max by (queue) (ordersys_dead_letters{s})", "{{queue}}"),
            unit="none",
            description="Messages in the queue's dead-letter queue: "
            "`ordersys dlq show` reads them.",
        ),
        timeseries(
            "Consumed per second by outcome",
            (
                "sum by (queue, outcome) "
                f"(rate(ordersys_consumer_messages_total{s}[{RATE}]))",
                "{{queue}} {{outcome}}",
            ),
            unit="ops",
            stack=True,
            width=24,
            description="applied: handled; duplicate: seen before, changed "
            "nothing; retried: failed, redelivered; dead_lettered: given up.",
        ),
    ]


def saga_summary_panels(job: str) -> list[Panel]:
    s = sel(job)
    return [
        row("Sagas (details: the ordersys sagas dashboard)"),
        timeseries(
            "Sagas by status",
            (f"max by (process, status) (ordersys_sagas{s})", "{{process}} {{status}}"),
            unit="none",
        ),
        timeseries(
            "Deadlines overdue",
            (
                f"max by (process) (ordersys_saga_deadlines_overdue{s})",
                "{{process}}",
            ),
            unit="none",
            description="Deadlines due more than 5 s ago and not fired: stuck sagas.",
        ),
    ]


SERVICE_PARTS: dict[str, dict[str, bool]] = {
    # which sections each service's dashboard has (see each composition.py)
    "users": {"events": True, "relay": True},
    "catalog": {"events": True, "projections": True},
    "orders": {"events": True, "relay": True, "projections": True, "sagas": True},
    "payments": {"events": True},
    "notifications": {"consumer": True},
    "analytics": {"consumer": True},
}

SERVICE_TEXT = {
    "users": "Registration, profiles and authentication; its relay tells other "
    "services who registered.",
    "catalog": "Products and inventory: reservations for the order saga, the "
    "product catalog read model.",
    "orders": "Orders, their read model, the order saga and the relay of order events.",
    "payments": "Captures and refunds with the simulated provider.",
    "notifications": "Consumes the orders' and users' events and tells customers.",
    "analytics": "Consumes the orders' events and keeps the figures.",
}


def service_dashboard(job: str) -> Dashboard:
    parts = SERVICE_PARTS[job]
    panels = message_panels(job)
    if parts.get("events"):
        panels += event_panels(job)
    if parts.get("relay"):
        panels += relay_panels(job)
    if parts.get("projections"):
        panels += projection_panels(job)
    if parts.get("sagas"):
        panels += saga_summary_panels(job)
    if parts.get("consumer"):
        panels += queue_panels(job)
    panels += process_panels(job)
    return Dashboard(
        f"ordersys-{job}",
        f"ordersys / {job}",
        f"The {job} service (`ordersys run {job}`). {SERVICE_TEXT[job]}",
        panels,
        job=job,
        tags=["service"],
    )


def gateway_dashboard() -> Dashboard:
    s = sel("gateway")
    server_errors = sel("gateway", 'status=~"5.."')
    client_errors = sel("gateway", 'status=~"4.."')
    panels = [
        row("HTTP"),
        stat(
            "Requests per second",
            f"sum(rate(ordersys_http_requests_total{s}[{RATE}]))",
            unit="reqps",
        ),
        stat(
            "5xx",
            f"sum(rate(ordersys_http_requests_total{server_errors}[{RATE}]))"
            f" / sum(rate(ordersys_http_requests_total{s}[{RATE}]))",
            unit="percentunit",
            red_from=0.05,
            description="Share of requests answered with a server error.",
        ),
        stat(
            "4xx",
            f"sum(rate(ordersys_http_requests_total{client_errors}[{RATE}]))"
            f" / sum(rate(ordersys_http_requests_total{s}[{RATE}]))",
            unit="percentunit",
            description="Share of requests refused: validation, authentication, "
            "not found, conflicts, rate limit.",
        ),
        stat(
            "p95 latency",
            "histogram_quantile(0.95, sum by (le) "
            f"(rate(ordersys_http_request_seconds_bucket{s}[{RATE}])))",
            unit="s",
            red_from=1,
        ),
        timeseries(
            "Requests per second by route",
            (
                "sum by (method, route) "
                f"(rate(ordersys_http_requests_total{s}[{RATE}]))",
                "{{method}} {{route}}",
            ),
            unit="reqps",
        ),
        timeseries(
            "Requests per second by status",
            (
                f"sum by (status) (rate(ordersys_http_requests_total{s}[{RATE}]))",
                "{{status}}",
            ),
            unit="reqps",
            stack=True,
        ),
        timeseries(
            "Latency by route (p50, p95, p99)",
            *[
                (
                    f"histogram_quantile({q}, sum by (le, method, route) "
                    f"(rate(ordersys_http_request_seconds_bucket{s}[{RATE}])))",
                    f"p{int(q * 100)} {{{{method}}}} {{{{route}}}}",
                )
                for q in (0.5, 0.95, 0.99)
            ],
            unit="s",
        ),
        timeseries(
            "Server errors by route",
            (
                "sum by (method, route, status) "
                f"(rate(ordersys_http_requests_total{server_errors}[{RATE}]))",
                "{{status}} {{method}} {{route}}",
            ),
            unit="reqps",
        ),
        heatmap(
            "Latency distribution",
            f"sum by (le) (increase(ordersys_http_request_seconds_bucket{s}[{RATE}]))",
            width=24,
        ),
        *process_panels("gateway"),
    ]
    return Dashboard(
        "ordersys-gateway",
        "ordersys / gateway",
        "The HTTP API gateway (`ordersys run gateway`): requests by route, status "
        "and latency.",
        panels,
        job="gateway",
        tags=["service"],
    )


def sagas_dashboard() -> Dashboard:
    finished = f"rate(ordersys_saga_seconds_count[{RATE}])"
    panels = [
        row("Now"),
        stat(
            "Running",
            'sum(max by (process) (ordersys_sagas{status="running"}))',
            unit="none",
        ),
        stat(
            "Stuck past a deadline",
            "sum(max by (process) (ordersys_saga_deadlines_overdue))",
            unit="none",
            red_from=1,
            description="Deadlines due more than 5 s ago and not fired.",
        ),
        stat(
            "Failed (share of finished)",
            f'sum(rate(ordersys_saga_seconds_count{{status="failed"}}[{RATE}]))'
            f" / sum({finished})",
            unit="percentunit",
            red_from=0.1,
        ),
        stat(
            "p95 duration (completed)",
            "histogram_quantile(0.95, sum by (le) "
            f'(rate(ordersys_saga_seconds_bucket{{status="completed"}}[{RATE}])))',
            unit="s",
        ),
        row("Over time"),
        timeseries(
            "Sagas by status",
            (
                "max by (process, status) (ordersys_sagas)",
                "{{process}} {{status}}",
            ),
            unit="none",
        ),
        timeseries(
            "Finished per second",
            (f"sum by (process, status) ({finished})", "{{process}} {{status}}"),
            unit="ops",
            stack=True,
        ),
        timeseries(
            "Duration (p50, p95, p99) by status",
            *[
                (
                    f"histogram_quantile({q}, sum by (le, process, status) "
                    f"(rate(ordersys_saga_seconds_bucket[{RATE}])))",
                    f"p{int(q * 100)} {{{{process}}}} {{{{status}}}}",
                )
                for q in (0.5, 0.95, 0.99)
            ],
            unit="s",
            description="From the saga's start to its end.",
        ),
        timeseries(
            "Deadlines overdue",
            ("max by (process) (ordersys_saga_deadlines_overdue)", "{{process}}"),
            unit="none",
        ),
        heatmap(
            "Duration distribution",
            f"sum by (le) (increase(ordersys_saga_seconds_bucket[{RATE}]))",
            width=24,
        ),
        row("The saga's steps (commands the orders service sends)"),
        timeseries(
            "Steps per second by outcome",
            (
                "sum by (message_type, outcome) (rate(ordersys_messages_total"
                '{message_type=~"product.reserveInventory|product.releaseInventory'
                "|product.commitInventory|payment.capture|payment.refund"
                f'|order.updateStatus"}}[{RATE}]))',
                "{{message_type}} {{outcome}}",
            ),
            unit="reqps",
            width=24,
        ),
    ]
    return Dashboard(
        "ordersys-sagas",
        "ordersys / sagas",
        "Process managers (the order saga): how many run, how they end, how long "
        "they take, and whether any is stuck past a deadline.",
        panels,
        tags=["sagas"],
    )


def overview_dashboard() -> Dashboard:
    jobs = "|".join(SERVICES)
    panels = [
        row("Services"),
        stat(
            "Targets down",
            "count(up == 0) or vector(0)",
            unit="none",
            red_from=1,
            width=4,
        ),
        stat(
            "Gateway requests per second",
            f'sum(rate(ordersys_http_requests_total{{job="gateway"}}[{RATE}]))',
            unit="reqps",
            width=5,
        ),
        stat(
            "Gateway 5xx",
            'sum(rate(ordersys_http_requests_total{job="gateway", status=~"5.."}'
            f"[{RATE}])) / sum(rate(ordersys_http_requests_total"
            f'{{job="gateway"}}[{RATE}]))',
            unit="percentunit",
            red_from=0.05,
            width=5,
        ),
        stat(
            "Dead letters",
            "sum(max by (queue) (ordersys_dead_letters)) or vector(0)",
            unit="none",
            red_from=1,
            width=5,
        ),
        stat(
            "Sagas stuck",
            "sum(max by (process) (ordersys_saga_deadlines_overdue)) or vector(0)",
            unit="none",
            red_from=1,
            width=5,
        ),
        timeseries(
            "Instances up by service",
            (f'sum by (job) (up{{job=~"{jobs}"}})', "{{job}}"),
            unit="none",
            width=24,
            height=6,
        ),
        row("Traffic"),
        timeseries(
            "Gateway requests per second by status",
            (
                'sum by (status) (rate(ordersys_http_requests_total{job="gateway"}'
                f"[{RATE}]))",
                "{{status}}",
            ),
            unit="reqps",
            stack=True,
        ),
        timeseries(
            "Gateway latency p95",
            (
                "histogram_quantile(0.95, sum by (le) (rate("
                f'ordersys_http_request_seconds_bucket{{job="gateway"}}[{RATE}])))',
                "p95",
            ),
            unit="s",
        ),
        timeseries(
            "Messages per second by service",
            (f"sum by (job) (rate(ordersys_messages_total[{RATE}]))", "{{job}}"),
            unit="reqps",
            stack=True,
        ),
        timeseries(
            "Failed messages by service and outcome",
            (
                "sum by (job, outcome) (rate(ordersys_messages_total"
                f'{{outcome=~"{INFRA_OUTCOMES}"}}[{RATE}]))',
                "{{job}} {{outcome}}",
            ),
            unit="reqps",
        ),
        row("Events and delivery"),
        timeseries(
            "Events appended per second",
            (
                f"max by (application) (rate(ordersys_events_appended_total[{RATE}]))",
                "{{application}}",
            ),
            unit="ops",
            width=8,
        ),
        timeseries(
            "Relay lag",
            ("max by (relay) (ordersys_relay_lag)", "{{relay}}"),
            unit="none",
            width=8,
        ),
        timeseries(
            "Messages waiting in queues",
            ("max by (queue) (ordersys_consumer_queue_depth)", "{{queue}}"),
            unit="none",
            width=8,
        ),
        timeseries(
            "Projection lag",
            (
                "max by (projection, application) (ordersys_projection_lag)",
                "{{application}} {{projection}}",
            ),
            unit="none",
        ),
        timeseries(
            "Dead letters by queue",
            ("max by (queue) (ordersys_dead_letters)", "{{queue}}"),
            unit="none",
        ),
        row("Sagas"),
        timeseries(
            "Sagas by status",
            ("max by (process, status) (ordersys_sagas)", "{{process}} {{status}}"),
            unit="none",
        ),
        timeseries(
            "Saga duration p95",
            (
                "histogram_quantile(0.95, sum by (le, process, status) "
                f"(rate(ordersys_saga_seconds_bucket[{RATE}])))",
                "{{process}} {{status}}",
            ),
            unit="s",
        ),
        row("Resources"),
        timeseries(
            "CPU by service",
            (f"sum by (job) (rate(process_cpu_seconds_total[{RATE}]))", "{{job}}"),
            unit="percentunit",
        ),
        timeseries(
            "Resident memory by service",
            ("sum by (job) (process_resident_memory_bytes)", "{{job}}"),
            unit="bytes",
        ),
    ]
    return Dashboard(
        "ordersys-overview",
        "ordersys / overview",
        "The whole system at a glance: which services are up, traffic and errors, "
        "delivery of events, read models, sagas, resources. The menu ordersys "
        "leads to each service's dashboard.",
        panels,
        tags=["overview"],
    )


def dashboards() -> dict[str, dict[str, Any]]:
    """Every dashboard, by file name."""
    boards = [
        overview_dashboard(),
        gateway_dashboard(),
        *(service_dashboard(name) for name in SERVICES if name != "gateway"),
        sagas_dashboard(),
    ]
    return {f"{board.uid}.json": board.to_json() for board in boards}


def render(board: dict[str, Any]) -> str:
    return json.dumps(board, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for name, board in dashboards().items():
        path = OUT / name
        text = render(board)
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if check:
        stale += sorted(
            p.name for p in OUT.glob("*.json") if p.name not in dashboards()
        )
    if stale:
        print("out of date, run deploy/grafana/generate.py: " + ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
