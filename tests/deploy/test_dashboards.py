"""The Grafana dashboards and the Prometheus alert rules ask only for what the
services export.

Every PromQL expression in deploy/grafana/dashboards/*.json (panel queries and
variable queries) and in deploy/prometheus/alerts.yml names only metrics of
the metrics contract below, with labels those metrics carry, and parses
(Prometheus' own parser, through ``promtool``). The alert rules fire when
tests/deploy/alerts_test.yml says they do (``promtool test rules``, in
simulated time).

``CONTRACT`` is what the services export: the live test compares it with the
series names of the running system's ``/metrics``. ``expressions()`` and
``metric_names()`` are here for that test too.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from ordersys.shop.services import SERVICES

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DASHBOARDS = DEPLOY / "grafana" / "dashboards"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERT_TESTS = Path(__file__).resolve().parent / "alerts_test.yml"

# --- the metrics contract --------------------------------------------------------
# Labels of each metric family, as the services export them; Prometheus adds
# `job` (the service's name) and `instance` to every series.
FAMILIES: dict[str, tuple[str, set[str]]] = {
    "ordersys_messages": ("counter", {"kind", "message_type", "outcome"}),
    "ordersys_message_seconds": ("histogram", {"kind", "message_type"}),
    "ordersys_events_appended": ("counter", {"application"}),
    "ordersys_relay_lag": ("gauge", {"relay"}),
    "ordersys_relay_position": ("gauge", {"relay"}),
    "ordersys_consumer_queue_depth": ("gauge", {"queue"}),
    "ordersys_dead_letters": ("gauge", {"queue"}),
    "ordersys_consumer_messages": ("counter", {"queue", "outcome"}),
    "ordersys_projection_lag": ("gauge", {"projection", "application"}),
    "ordersys_projection_position": ("gauge", {"projection", "application"}),
    "ordersys_sagas": ("gauge", {"process", "status"}),
    "ordersys_saga_seconds": ("histogram", {"process", "status"}),
    "ordersys_saga_deadlines_overdue": ("gauge", {"process"}),
    "ordersys_saga_partitions_owned": ("gauge", {"process"}),
    "ordersys_saga_takeovers": ("counter", {"process"}),
    "ordersys_commands_sent": ("counter", {"process", "type"}),
    "ordersys_leases_held": ("gauge", {"worker"}),
    "ordersys_takeovers": ("counter", {"worker"}),
    # the gateway
    "ordersys_http_requests": ("counter", {"route", "method", "status"}),
    "ordersys_http_request_seconds": ("histogram", {"route", "method"}),
    # prometheus_client's defaults (those the dashboards use)
    "process_cpu_seconds": ("counter", set()),
    "process_resident_memory_bytes": ("gauge", set()),
    "process_virtual_memory_bytes": ("gauge", set()),
    "process_open_fds": ("gauge", set()),
    "process_max_fds": ("gauge", set()),
    "process_start_time_seconds": ("gauge", set()),
    # Prometheus' own, per target
    "up": ("gauge", set()),
}
TARGET_LABELS = {"job", "instance"}


def _series(family: str, kind: str) -> dict[str, set[str]]:
    labels = FAMILIES[family][1] | TARGET_LABELS
    if kind == "counter":
        return {f"{family}_total": labels}
    if kind == "histogram":
        return {
            f"{family}_bucket": labels | {"le"},
            f"{family}_sum": labels,
            f"{family}_count": labels,
        }
    return {family: labels}


LABELS: dict[str, set[str]] = {
    name: labels
    for family, (kind, _) in FAMILIES.items()
    for name, labels in _series(family, kind).items()
}
"""Series name -> the labels its series carry."""

CONTRACT: set[str] = set(LABELS)
"""Every series name a dashboard or an alert rule may use."""

# --- a small PromQL reader ------------------------------------------------------
# Enough of the grammar to find metric names, label names and functions;
# whether an expression parses at all is promtool's to say.

FUNCTIONS = {
    "abs", "absent", "absent_over_time", "acos", "acosh", "asin", "asinh", "atan",
    "atanh", "avg_over_time", "ceil", "changes", "clamp", "clamp_max", "clamp_min",
    "cos", "cosh", "count_over_time", "day_of_month", "day_of_week", "day_of_year",
    "days_in_month", "deg", "delta", "deriv", "exp", "floor", "histogram_count",
    "histogram_fraction", "histogram_quantile", "histogram_stddev",
    "histogram_stdvar", "histogram_sum", "holt_winters", "hour", "idelta",
    "increase", "irate", "label_join", "label_replace", "last_over_time", "ln",
    "log10", "log2", "max_over_time", "min_over_time", "minute", "month", "pi",
    "predict_linear", "present_over_time", "quantile_over_time", "rad", "rate",
    "resets", "round", "scalar", "sgn", "sin", "sinh", "sort", "sort_desc", "sqrt",
    "stddev_over_time", "stdvar_over_time", "sum_over_time", "tan", "tanh", "time",
    "timestamp", "vector", "year",
    # aggregations
    "avg", "bottomk", "count", "count_values", "group", "max", "min", "quantile",
    "stddev", "stdvar", "sum", "topk",
}  # fmt: skip
GROUPING = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan"}

TOKEN = re.compile(
    r"""
    (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
  | (?P<matchers>\{[^}]*\})
  | (?P<range>\[[^\]]*\])
  | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:ms|[smhdwy])?)
  | (?P<name>[A-Za-z_:][A-Za-z0-9_:]*)
  | (?P<open>\()
  | (?P<close>\))
  | (?P<space>\s+)
  | (?P<other>.)
    """,
    re.VERBOSE,
)
MATCHER = re.compile(
    r"""\s*([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)\s*("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)\s*,?"""
)


@dataclass
class Reading:
    """What an expression refers to."""

    metrics: set[str]
    matched: dict[str, set[str]]  # metric -> label names in its matchers
    grouping: set[str]  # labels of by/without/on/ignoring/group_*
    functions: set[str]


def read(expr: str) -> Reading:
    tokens = [
        (m.lastgroup, m.group())
        for m in TOKEN.finditer(expr)
        if m.lastgroup not in ("space",)
    ]
    reading = Reading(set(), {}, set(), set())
    i = 0
    while i < len(tokens):
        kind, text = tokens[i]
        following = tokens[i + 1] if i + 1 < len(tokens) else (None, "")
        if kind == "name" and text in GROUPING and following[0] == "open":
            j = i + 2
            while j < len(tokens) and tokens[j][0] != "close":
                if tokens[j][0] == "name":
                    reading.grouping.add(tokens[j][1])
                j += 1
            i = j + 1
            continue
        if kind == "name" and (
            following[0] == "open" or following[1] in ("by", "without")
        ):
            reading.functions.add(text)  # sum(...), or sum by (...) (...)
        elif kind == "name" and text.lower() not in KEYWORDS | GROUPING:
            reading.metrics.add(text)
            labels = reading.matched.setdefault(text, set())
            if following[0] == "matchers":
                labels |= _labels(following[1])
                i += 1
        elif kind == "matchers":  # a selector without a name: {__name__="..."}
            labels = _labels(text)
            names = re.findall(r'__name__\s*=\s*"([^"]*)"', text)
            for name in names:
                reading.metrics.add(name)
                reading.matched.setdefault(name, set()).update(labels - {"__name__"})
            if not names:
                reading.metrics.add("{" + text + "}")
        i += 1
    return reading


def _labels(matchers: str) -> set[str]:
    return {m.group(1) for m in MATCHER.finditer(matchers[1:-1])}


def problems(expr: str, legend: str = "") -> list[str]:
    """What in ``expr`` (and its legend) the contract does not have."""
    reading = read(expr)
    found = []
    for function in sorted(reading.functions - FUNCTIONS):
        found.append(f"unknown function {function}()")
    known: set[str] = set(TARGET_LABELS)
    for metric in sorted(reading.metrics):
        if metric not in CONTRACT:
            found.append(f"metric {metric} is not in the contract")
            continue
        known |= LABELS[metric]
        for label in sorted(reading.matched.get(metric, set()) - LABELS[metric]):
            found.append(f"{metric} has no label {label}")
    for label in sorted(reading.grouping - known):
        found.append(f"no metric of the expression has the label {label}")
    for label in sorted(set(re.findall(r"\{\{\s*(\w+)\s*\}\}", legend)) - known):
        found.append(f"the legend names {label}, which no metric has")
    return found


def substitute(expr: str) -> str:
    """A Grafana query as Prometheus would receive it: Grafana's interval
    variables become durations, dashboard variables match anything."""
    expr = re.sub(r"\$\{?__(rate_interval|interval|range)\}?", "5m", expr)
    return re.sub(r"\$\{?[A-Za-z_]\w*(?::\w+)?\}?", ".*", expr)


# --- where the expressions are ---------------------------------------------------


@dataclass(frozen=True)
class Expression:
    where: str
    expr: str  # as Prometheus receives it
    legend: str = ""


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def dashboards() -> dict[str, dict[str, Any]]:
    return {
        path.name: json.loads(path.read_text(encoding="utf-8"))
        for path in sorted(DASHBOARDS.glob("*.json"))
    }


def alert_rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(ALERTS.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"]]


def expressions() -> list[Expression]:
    """Every PromQL expression of the dashboards and the alert rules."""
    found = []
    for name, board in dashboards().items():
        for panel in _panels(board["panels"]):
            for target in panel.get("targets", []):
                found.append(
                    Expression(
                        f"{name}: {panel['title']} ({target['refId']})",
                        substitute(target["expr"]),
                        target.get("legendFormat", ""),
                    )
                )
        for variable in board.get("templating", {}).get("list", []):
            if variable.get("type") == "query":
                query = variable["definition"]
                call = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query)
                assert call, f"{name}: variable {variable['name']}: {query}"
                found.append(
                    Expression(
                        f"{name}: variable {variable['name']}",
                        substitute(call.group(1)),
                        "{{" + call.group(2) + "}}",
                    )
                )
    for rule in alert_rules():
        found.append(Expression(f"alerts.yml: {rule['alert']}", rule["expr"]))
    return found


def metric_names() -> set[str]:
    """The series names the dashboards and alert rules use."""
    return {name for e in expressions() for name in read(e.expr).metrics}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip(
            "promtool is missing: apt-get install prometheus (.ci/services does)"
        )
    return path


# --- the tests ---------------------------------------------------------------------

EXPRESSIONS = expressions()


@pytest.mark.parametrize("expression", EXPRESSIONS, ids=lambda e: e.where)
def test_expression_uses_only_the_contract(expression: Expression) -> None:
    assert problems(expression.expr, expression.legend) == [], expression.expr


def test_every_expression_parses(tmp_path: Path) -> None:
    """Prometheus' parser reads every expression (as a recording rule)."""
    rules = [
        {"record": f"ordersys:check_{n}", "expr": e.expr}
        for n, e in enumerate(EXPRESSIONS)
    ]
    path = tmp_path / "expressions.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "check", "rules": rules}]}))
    result = subprocess.run(
        [promtool(), "check", "rules", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    bad = sorted(
        {
            EXPRESSIONS[int(n)].where
            for n in re.findall(r"ordersys:check_(\d+)", result.stdout + result.stderr)
        }
    )
    assert result.returncode == 0, f"{bad}\n{result.stdout}{result.stderr}"
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_the_reader_finds_what_is_not_in_the_contract() -> None:
    applied = 'ordersys_consumer_messages_total{outcome="applied"}'
    assert problems(f"sum by (queue) (rate({applied}[5m]))") == []
    assert problems("rate(ordersys_orders_total[5m])") == [
        "metric ordersys_orders_total is not in the contract"
    ]
    assert problems("ordersys_message_seconds") == [
        "metric ordersys_message_seconds is not in the contract"  # a histogram
    ]
    assert problems('ordersys_relay_lag{queue="x"}') == [
        "ordersys_relay_lag has no label queue"
    ]
    assert problems("max by (queue) (ordersys_relay_lag)") == [
        "no metric of the expression has the label queue"
    ]
    assert problems("histogram_quantil(0.9, up)") == [
        "unknown function histogram_quantil()"
    ]
    assert problems("up", legend="{{service}}") == [
        "the legend names service, which no metric has"
    ]
    assert problems(substitute('up{instance=~"$instance"} offset 5m')) == []


def test_alert_rules_pass_promtool() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(ALERTS)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_alert_rules_fire_when_they_should() -> None:
    result = subprocess.run(
        [promtool(), "test", "rules", ALERT_TESTS.name],
        cwd=ALERT_TESTS.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_alerts_cover_what_operations_needs() -> None:
    rules = {rule["alert"]: rule for rule in alert_rules()}
    assert rules["OrdersysServiceDown"]["expr"] == "up == 0"
    assert "ordersys_dead_letters" in rules["OrdersysDeadLetters"]["expr"]
    assert "ordersys_projection_lag" in rules["OrdersysProjectionLagHigh"]["expr"]
    assert "ordersys_saga_deadlines_overdue" in rules["OrdersysSagaStuck"]["expr"]
    assert "ordersys_relay_lag" in rules["OrdersysRelayLagHigh"]["expr"]
    operations = (ROOT / "docs" / "operations.md").read_text(encoding="utf-8")
    for name, rule in rules.items():
        assert rule["labels"]["severity"] in {"warning", "critical"}
        assert {"summary", "description", "runbook"} <= set(rule["annotations"])
        anchor = rule["annotations"]["runbook"].split("#")[1]
        assert anchor == name.lower()
        assert f"### {name}" in operations, f"docs/operations.md explains {name}"
    tested = ALERT_TESTS.read_text(encoding="utf-8")
    for name in rules:
        assert f"alertname: {name}" in tested, f"alerts_test.yml tests {name}"


@pytest.mark.parametrize("config", ["prometheus.yml", "prometheus.local.yml"], ids=str)
def test_prometheus_config_is_valid_and_scrapes_every_service(config: str) -> None:
    path = DEPLOY / "prometheus" / config
    result = subprocess.run(
        [promtool(), "check", "config", path.name],
        cwd=path.parent,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert loaded["rule_files"] == ["alerts.yml"]
    jobs = {job["job_name"]: job for job in loaded["scrape_configs"]}
    assert set(jobs) == set(SERVICES)  # the job label is the service's name


def test_the_local_config_uses_the_ports_of_ordersys_up() -> None:
    path = DEPLOY / "prometheus" / "prometheus.local.yml"
    loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"]
        for job in loaded["scrape_configs"]
    }
    ports = {
        name: 9101 + n for n, name in enumerate(s for s in SERVICES if s != "gateway")
    }
    ports["gateway"] = 8000
    assert targets == {name: [f"127.0.0.1:{port}"] for name, port in ports.items()}


def test_the_compose_config_finds_every_replica() -> None:
    loaded = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    for job in loaded["scrape_configs"]:
        (dns,) = job["dns_sd_configs"]
        assert dns["names"] == [job["job_name"]]  # the compose service's name
        assert dns["port"] == (8000 if job["job_name"] == "gateway" else 9100)


def test_dashboards_are_the_generators_output() -> None:
    result = subprocess.run(
        [sys.executable, str(DEPLOY / "grafana" / "generate.py"), "--check"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_there_is_an_overview_a_dashboard_per_service_and_one_for_sagas() -> None:
    boards = dashboards()
    expected = {f"ordersys-{name}.json" for name in ("overview", *SERVICES, "sagas")}
    assert set(boards) == expected
    assert len({board["uid"] for board in boards.values()}) == len(boards)
    for name in SERVICES:
        variables = boards[f"ordersys-{name}.json"]["templating"]["list"]
        assert [v["name"] for v in variables] == ["instance"]
        assert f'job="{name}"' in variables[0]["definition"]


@pytest.mark.parametrize("name", sorted(dashboards()), ids=str)
def test_dashboard_is_well_formed(name: str) -> None:
    board = dashboards()[name]
    datasources = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/datasources/prometheus.yml").read_text()
    )["datasources"]
    uids = {ds["uid"] for ds in datasources if ds["type"] == "prometheus"}
    variables = {v["name"] for v in board["templating"]["list"]}
    panels = list(_panels(board["panels"]))
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] in uids, panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] in uids
            used = set(re.findall(r"\$\{?([A-Za-z]\w*)", target["expr"]))
            assert used <= variables, f"{panel['title']}: undefined {used - variables}"


def test_grafana_loads_the_dashboards_the_compose_file_mounts() -> None:
    provider = yaml.safe_load(
        (DEPLOY / "grafana/provisioning/dashboards/dashboards.yml").read_text()
    )["providers"][0]
    compose = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    mounts = dict(
        volume.split(":")[:2] for volume in compose["services"]["grafana"]["volumes"]
    )
    assert mounts["./grafana/dashboards"] == provider["options"]["path"]
    assert mounts["./grafana/provisioning"] == "/etc/grafana/provisioning"
