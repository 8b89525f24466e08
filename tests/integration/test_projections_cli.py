"""`ordersys projections list | rebuild NAME` on a read model of 100,000 events:
the rebuild shows its progress and leaves the read model as it was."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from ordersys.projections import ProjectionRunner
from ordersys.settings import Settings
from ordersys.shop.catalog.domain import Inventory, Product
from ordersys.shop.catalog.projections import ProductCatalog
from ordersys.shop.catalog.service import Catalog
from ordersys.shop.settings import load_shop_settings

ROOT = Path(__file__).resolve().parents[2]
COMMAND = [sys.executable, "-m", "ordersys.shop.cli"]
PRODUCTS = 2_000
STOCK_ADDED = 48
EVENTS = PRODUCTS * (2 + STOCK_ADDED)  # created, its inventory, stock added


def write_events(catalog: Catalog) -> None:
    """2,000 products, each with its inventory and 48 deliveries, written 50
    products to a transaction."""
    batch: list[Product | Inventory] = []
    for number in range(PRODUCTS):
        product = Product.create(f"SKU-{number}", f"product {number}", 100 + number)
        inventory = Inventory(product.id)
        for quantity in range(1, STOCK_ADDED + 1):
            inventory.add_stock(quantity)
        batch += [product, inventory]
        if len(batch) == 100:
            catalog.write(*batch)
            batch.clear()


def snapshot(runner: ProjectionRunner[Any]) -> list[dict[str, Any]]:
    return runner.store.find("products", order_by="sku", limit=PRODUCTS + 1)


@pytest.fixture
def environment(pg_settings: Settings) -> dict[str, str]:
    return {
        **os.environ,
        "ORDERSYS_POSTGRES_DBNAME": "ordersys_test",
        "ORDERSYS_POSTGRES_SCHEMA": pg_settings.postgres_schema,
        "ORDERSYS_CACHE_PREFIX": f"test-{uuid.uuid4().hex[:8]}",
    }


def cli(environment: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*COMMAND, "projections", *args],
        cwd=ROOT,
        env=environment,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


@pytest.mark.timeout(900)  # 100,000 events written, projected, then rebuilt
def test_rebuilding_100_000_events_shows_progress_and_changes_nothing(
    pg_settings: Settings, environment: dict[str, str]
) -> None:
    settings = load_shop_settings(
        {
            "postgres_dbname": "ordersys_test",
            "postgres_schema": pg_settings.postgres_schema,
        }
    )
    catalog = Catalog(settings)
    write_events(catalog)
    built = ProjectionRunner(ProductCatalog, catalog)
    built.catch_up()
    before = snapshot(built)

    listed = cli(environment, "list")
    rebuilt = cli(environment, "rebuild", "product_catalog")
    after = snapshot(ProjectionRunner(ProductCatalog, catalog))
    catalog.close()

    print(rebuilt.stdout)
    assert listed.returncode == 0, listed.stderr
    assert "product_catalog" in listed.stdout
    assert str(EVENTS) in listed.stdout
    assert rebuilt.returncode == 0, rebuilt.stderr
    progress = [line for line in rebuilt.stdout.splitlines() if " events/s, " in line]
    assert progress[-1].startswith(f"product_catalog: {EVENTS}/{EVENTS} events, ")
    assert progress[-1].endswith(" s left")
    assert rebuilt.stdout.splitlines()[-1].startswith(
        f"product_catalog: rebuilt up to position {EVENTS} in "
    )
    assert len(before) == PRODUCTS
    assert after == before


def test_an_unknown_projection_is_named_with_the_known_ones(
    environment: dict[str, str],
) -> None:
    result = cli(environment, "rebuild", "nope")

    assert result.returncode == 1
    assert result.stderr.startswith("ordersys: error: there is no projection 'nope'")
    assert "product_catalog" in result.stderr
    assert "Traceback" not in result.stderr
