"""``ordersys projections list | rebuild NAME``: the shop's read models.

The projections are found in the services' compositions, built here over the
in-process transport: nothing is served, and no broker is needed.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Annotated, Any

import typer
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from ordersys.errors import NotFound
from ordersys.projections import ProjectionRunner
from ordersys.service import Service
from ordersys.shop.settings import ShopSettings, load_shop_settings
from ordersys.shop.system import SHOP
from ordersys.terminal import console
from ordersys.transport.memory import MemoryTransport

app = typer.Typer(help="The read models the services keep.", no_args_is_help=True)

PLAIN_EVERY = 2.0
"""Seconds between progress lines when the output is not a terminal."""


@dataclass
class Found:
    service: str
    runner: ProjectionRunner[Any]


@contextmanager
def projections(settings: ShopSettings) -> Iterator[list[Found]]:
    """Every projection of the shop, by service; their applications are
    closed afterwards."""
    # One connection per pool: every service is composed here at once.
    settings = settings.model_copy(
        update={"postgres_pool_size": 1, "postgres_max_overflow": 1}
    )
    built: list[Service] = []
    try:
        for name in SHOP.names:
            if name == "gateway":  # it keeps no read model of its own
                continue
            service = SHOP.service(name, settings, MemoryTransport())
            built.append(service)
        yield [
            Found(service.name, worker)
            for service in built
            for worker in service.workers
            if isinstance(worker, ProjectionRunner)
        ]
    finally:
        for service in built:
            for application in service.applications:
                application.close()


@app.command("list")
def list_projections() -> int:
    """Each projection: its service, position, lag and live generation."""
    table = Table("projection", "service", "position", "lag", "generation")
    with projections(load_shop_settings()) as found:
        for each in found:
            runner = each.runner
            table.add_row(
                runner.namespace,
                each.service,
                str(runner.position()),
                str(runner.lag()),
                str(runner.generation),
            )
    console.print(table)
    return 0


class RateColumn(ProgressColumn):
    """Events applied per second."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text(f"{speed or 0:,.0f} events/s")


class PlainProgress:
    """Progress as a line every few seconds, for output that is not a terminal."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.started = time.monotonic()
        self.said = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self.said < PLAIN_EVERY and done < total:
            return
        self.said = now
        rate = done / max(now - self.started, 1e-9)
        left = (total - done) / rate if rate else 0.0
        console.print(
            f"{self.name}: {done}/{total} events, {rate:,.0f} events/s, "
            f"{left:.0f} s left",
            markup=False,
        )


@app.command()
def rebuild(
    name: Annotated[str, typer.Argument(help="The projection, as `list` names it.")],
) -> int:
    """Rebuild a read model from the first event (with its service stopped)."""
    with projections(load_shop_settings()) as found:
        runner = next((f.runner for f in found if f.runner.namespace == name), None)
        if runner is None:
            known = ", ".join(sorted(f.runner.namespace for f in found))
            raise NotFound(f"there is no projection {name!r} (there are: {known})")
        started = time.monotonic()
        if console.is_terminal:
            columns = (
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                RateColumn(),
                TimeRemainingColumn(),
            )
            with Progress(*columns, console=console) as bar:
                task = bar.add_task(name, total=None)
                generation = runner.rebuild(
                    progress=lambda done, total: bar.update(
                        task, completed=done, total=total
                    )
                )
        else:
            generation = runner.rebuild(progress=PlainProgress(name))
        console.print(
            f"{name}: rebuilt up to position {runner.position()} in "
            f"{time.monotonic() - started:.1f} s; generation {generation} is live",
            markup=False,
        )
    return 0
