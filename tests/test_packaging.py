"""ordersys as its users install it, each time in a fresh virtualenv.

The core install is the framework alone: it brings a handful of distributions,
``import ordersys`` loads no server client, and a part whose extra is missing
says which extra to install. ``ordersys[all]`` runs the bundled system.

The package is built from a copy of what the Dockerfile copies (pyproject.toml,
README.md, src/), so that building leaves nothing in the working tree; pip's
cache makes every run after the first quick. ``pytest -m packaging`` runs only
these tests.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ordersys.settings import Settings
from tests.integration.test_transport_rabbitmq import delete_topology

# Installing every extra takes minutes on a busy machine.
pytestmark = [pytest.mark.packaging, pytest.mark.timeout(1200)]

ROOT = Path(__file__).resolve().parent.parent
CORE_DISTRIBUTIONS_AT_MOST = 15
NOT_ON_IMPORT = ("kombu", "redis", "psycopg", "fastapi", "opentelemetry.sdk")
"""Modules (and their submodules) that ``import ordersys`` must not load."""


@dataclass(frozen=True)
class Venv:
    path: Path

    def bin(self, name: str) -> str:
        return str(self.path / "bin" / name)

    def python(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.bin("python"), *args], capture_output=True, text=True, check=False
        )

    def distributions(self) -> list[str]:
        """The distributions installed, but the installer's own."""
        listing = self.python(
            "-c",
            "import importlib.metadata as m; "
            "print('\\n'.join(d.metadata['Name'] for d in m.distributions()))",
        )
        names = {name.lower() for name in listing.stdout.split()}
        return sorted(names - {"pip", "setuptools"})

    def modules_imported_by(self, statement: str) -> list[str]:
        """Every module ``statement`` imports, as ``-X importtime`` lists them."""
        result = self.python("-X", "importtime", "-c", statement)
        assert result.returncode == 0, result.stderr
        return [
            line.rsplit("|", 1)[-1].strip()
            for line in result.stderr.splitlines()
            if line.startswith("import time:") and "imported package" not in line
        ]


def make_venv(path: Path, requirement: str) -> Venv:
    subprocess.run([sys.executable, "-m", "venv", str(path)], check=True)
    venv = Venv(path)
    installing = subprocess.run(
        [venv.bin("pip"), "install", "--quiet", "--no-compile", requirement],
        capture_output=True,
        text=True,
        check=False,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    assert installing.returncode == 0, installing.stderr[-5000:]
    return venv


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("source")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, copy / name)
    shutil.copytree(
        ROOT / "src",
        copy / "src",
        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"),
    )
    return copy


@pytest.fixture(scope="module")
def core(tmp_path_factory: pytest.TempPathFactory, source: Path) -> Iterator[Venv]:
    path = tmp_path_factory.mktemp("core") / "venv"
    yield make_venv(path, str(source))
    shutil.rmtree(path)


@pytest.fixture(scope="module")
def everything(
    tmp_path_factory: pytest.TempPathFactory, source: Path
) -> Iterator[Venv]:
    path = tmp_path_factory.mktemp("all") / "venv"
    yield make_venv(path, f"{source}[all]")
    shutil.rmtree(path)


def test_the_core_install_brings_at_most_15_distributions(core: Venv) -> None:
    # Given a fresh virtualenv, when `pip install <repo>` has run
    installed = core.distributions()

    # Then ordersys and its core dependencies are all there is
    print(f"{len(installed)} distributions: {', '.join(installed)}")
    assert "ordersys" in installed
    assert len(installed) <= CORE_DISTRIBUTIONS_AT_MOST


@pytest.mark.parametrize("install", ["core", "everything"])
def test_import_ordersys_loads_no_server_client_nor_the_opentelemetry_sdk(
    install: str, request: pytest.FixtureRequest
) -> None:
    # Given the core install, or one with every extra (clients installed)
    venv: Venv = request.getfixturevalue(install)

    # When a program imports ordersys
    imported = venv.modules_imported_by("import ordersys")

    # Then none of those modules is among what it imported
    loaded = [
        module
        for module in imported
        if any(module == m or module.startswith(f"{m}.") for m in NOT_ON_IMPORT)
    ]
    print(f"{install}: {len(imported)} modules imported; of {NOT_ON_IMPORT}: {loaded}")
    assert "ordersys" in imported
    assert loaded == []


@pytest.mark.parametrize(
    "example", sorted((ROOT / "examples").glob("*.py")), ids=lambda p: p.name
)
def test_the_examples_run_embedded_on_the_core_install(
    core: Venv, example: Path
) -> None:
    # Given the core install, when a library user's program runs in memory
    result = core.python(str(example))

    # Then it needs nothing more: no extra, and no tracing or metrics to set up
    assert result.returncode == 0, result.stderr[-4000:]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("use", "message"),
    [
        (
            "ordersys.KombuTransport",
            "KombuTransport needs the rabbitmq extra: pip install 'ordersys[rabbitmq]'",
        ),
        (
            "ordersys.Application(ordersys.load_settings({'persistence': 'postgres'}))",
            "PostgreSQL persistence needs the postgres extra: "
            "pip install 'ordersys[postgres]'",
        ),
        (
            "from ordersys.cache import open_cache; "
            "open_cache(ordersys.load_settings({'persistence': 'postgres'}))",
            "RedisCache needs the redis extra: pip install 'ordersys[redis]'",
        ),
        (
            "from ordersys.service import Service; "
            "settings = ordersys.load_settings({'metrics_port': 9999}); "
            "Service('shelf', settings, ordersys.MemoryTransport()).start()",
            "Measuring with Prometheus needs the observability extra: "
            "pip install 'ordersys[observability]'",
        ),
    ],
    ids=["rabbitmq", "postgres", "redis", "observability"],
)
def test_a_part_whose_extra_is_missing_names_the_extra(
    core: Venv, use: str, message: str
) -> None:
    # Given the core install, when a program uses a part that needs an extra
    program = (
        "import ordersys\n"
        "try:\n"
        f"    {use}\n"
        "except ordersys.MissingExtra as e:\n"
        "    print(f'{type(e).__name__}: {e}')\n"
    )
    result = core.python("-c", program)

    # Then it gets the typed error that says what to install
    assert result.stderr == ""
    assert result.stdout.strip() == f"MissingExtra: {message}"


def test_the_install_with_every_extra_runs_the_bundled_system(
    everything: Venv, pg_settings: Settings
) -> None:
    # Given `pip install '<repo>[all]'`, and a schema and prefix of this test's
    prefix = f"test-{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "ORDERSYS_POSTGRES_DBNAME": pg_settings.postgres_dbname,
        "ORDERSYS_POSTGRES_SCHEMA": str(pg_settings.postgres_schema),
        "ORDERSYS_MESSAGING_PREFIX": prefix,
        "ORDERSYS_CACHE_PREFIX": prefix,
    }

    # When a user runs one of its services
    service = subprocess.Popen(
        [everything.bin("ordersys"), "run", "catalog"],
        cwd=everything.path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert service.stdout is not None
        output = []
        for line in service.stdout:
            output.append(line)
            if line.startswith("catalog ready"):
                break

        # Then it comes up on the servers, and stops cleanly when asked to
        assert output, "catalog printed nothing"
        assert output[-1].startswith("catalog ready"), "".join(output)
        service.send_signal(signal.SIGTERM)
        assert service.wait(timeout=30) == 0
    finally:
        if service.poll() is None:
            service.kill()
        service.wait()
        delete_topology(prefix)
