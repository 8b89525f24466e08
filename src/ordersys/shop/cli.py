"""The ``ordersys`` command line.

Every command prints what it did on standard output; an error is one line
``ordersys: error: ...`` on standard error, never a traceback, with exit
status 2 for a bad command line or setting and 1 for anything else.
"""

from __future__ import annotations

import logging
import os
import re
import secrets
import sys
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from eventsourcing.persistence import OperationalError

from ordersys import __version__, launcher
from ordersys.datadir import check_data_dir
from ordersys.doctor import Check, run_checks
from ordersys.errors import InfrastructureUnavailable, InvalidInput, OrdersysError
from ordersys.messaging import cli as dlq
from ordersys.observability.logs import configure_logging
from ordersys.observability.tracing import configure_tracing, shutdown_tracing
from ordersys.replicas import Replica, parse_replicas, replica_name
from ordersys.service import Service
from ordersys.settings import address_of
from ordersys.shop import admin_command, projections_command
from ordersys.shop.demo import run_demo
from ordersys.shop.gateway.composition import GatewayService
from ordersys.shop.settings import ShopSettings, load_shop_settings
from ordersys.shop.system import SHOP
from ordersys.shop.teardown_command import teardown
from ordersys.signals import stop_on_signals
from ordersys.startup import servers_needed, when_available
from ordersys.terminal import console

app = typer.Typer(
    name="ordersys",
    help="ordersys: event sourcing and order management.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(dlq.app, name="dlq")
app.add_typer(admin_command.app, name="admin")
app.add_typer(projections_command.app, name="projections")
app.command()(teardown)

GATEWAY = "gateway"


def _version(value: bool) -> None:
    if value:
        console.print(__version__)
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Say it."),
    ] = False,
) -> None:
    """ordersys: event sourcing and order management."""


def _print_checks(checks: list[Check]) -> None:
    width = max(len(c.server) for c in checks)
    for check in checks:
        status = "[green]ok  [/]" if check.ok else "[bold red]DOWN[/]"
        line = f"{check.server:<{width}}  {check.address:<22} {check.detail}"
        console.print(status, end=" ")
        console.print(line, markup=False)


@app.command()
def doctor(
    embedded: Annotated[
        bool,
        typer.Option(help="Check the embedded mode's data directory instead."),
    ] = False,
    data_dir: Annotated[
        Path | None, typer.Option(help="The data directory [ORDERSYS_DATA_DIR].")
    ] = None,
) -> int:
    """Check the servers, or the embedded mode's data directory."""
    settings = load_shop_settings()
    if embedded or settings.persistence == "sqlite":
        checks = [check_data_dir(data_dir or Path(settings.data_dir))]
    else:
        checks = run_checks(settings)
    _print_checks(checks)
    return 0 if all(c.ok for c in checks) else 1


def say(line: str) -> None:
    print(line, flush=True)


def _start_service(name: str, settings: ShopSettings) -> Service:
    """Build and start ``name`` once the servers it needs answer; what it
    started is stopped again if it cannot start."""
    from ordersys.transport.rabbitmq import KombuTransport

    for server in servers_needed(settings):
        server.check()
    transport = KombuTransport.from_settings(settings)
    try:
        service = SHOP.service(name, settings, transport)
    except BaseException as e:
        transport.close()
        raise _named(e, settings) from None
    try:
        service.start()
    except BaseException as e:
        service.stop()
        raise _named(e, settings) from None
    return service


def _unraisable_as_a_log_line(unraisable: Any) -> None:
    """An error in a finalizer (a half-built service's connection pool being
    collected after a failed start) as one log line, not a traceback."""
    logging.getLogger("ordersys.shop.cli").warning(
        "%s: %r", unraisable.err_msg or "ignored", unraisable.exc_value
    )


def _named(error: BaseException, settings: ShopSettings) -> BaseException:
    """The event store's "no connection" (a busy or restarting PostgreSQL) as
    the server it is, so that it is waited for like a refused connection."""
    if isinstance(error, OperationalError):
        reason = str(error).strip().splitlines()[-1:] or ["no connection"]
        return InfrastructureUnavailable(
            "PostgreSQL", settings.postgres_address, reason[0]
        )
    return error


def ready_line(service: Service, name: str | None = None) -> str:
    """What a started service says, as ``name`` (a replica's, ``orders#2``);
    the gateway adds where it listens (the port it was given, when
    ORDERSYS_GATEWAY_PORT is 0)."""
    name = name or service.name
    line = f"{name} ready, serving {len(service.handled())} message types"
    if isinstance(service, GatewayService):
        line += f" at {service.url}"
    return line


@app.command()
def run(
    service: Annotated[str, typer.Argument(help=f"One of: {', '.join(SHOP.names)}.")],
) -> int:
    """Run one service, waiting for the servers it needs at start-up."""
    if service not in SHOP.names:
        msg = f"no service {service!r}; one of: {', '.join(SHOP.names)}"
        raise InvalidInput(msg, field="service")
    # A replica of `ordersys up --replicas` says which one it is (orders#2).
    name = replica_name(service, os.environ)
    # libpq names each connection after it: pg_stat_activity shows who holds which.
    os.environ.setdefault("PGAPPNAME", name)
    settings = load_shop_settings()
    configure_logging(settings.log_level, settings.log_format, service=name)
    if settings.otlp_endpoint:
        configure_tracing(service, settings.otlp_endpoint)
    sys.unraisablehook = _unraisable_as_a_log_line
    stopping = threading.Event()
    stop_on_signals(stopping)
    started = when_available(
        lambda: _start_service(service, settings),
        timeout=settings.startup_timeout,
        stopping=stopping,
        say=say,
    )
    if started is None:
        return 0
    try:
        say(ready_line(started, name))
        stopping.wait()
    finally:
        started.stop()
        shutdown_tracing()
    say(f"{name} stopped")
    return _leave_at_once()


def _leave_at_once() -> NoReturn:
    """Exit now that everything has stopped: what is left is the interpreter's
    finalization (connection pools still referenced closed one by one, the
    modules of the whole shop collected), which can take seconds on a busy
    machine, past the 5 s in which Ctrl-C must stop a system."""
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def _banner(
    settings: ShopSettings, apis: list[str], metrics_port: int, replicas: list[Replica]
) -> None:
    rabbitmq = address_of(settings.rabbitmq_url)
    launcher.say(
        f"RabbitMQ {rabbitmq} (prefix {settings.messaging_prefix}), "
        f"PostgreSQL {settings.postgres_address}/{settings.postgres_dbname}"
    )
    launcher.say(f"API: {' and '.join(apis)} (OpenAPI and Swagger UI at /docs)")
    if metrics_port:
        last = metrics_port + len(SHOP.names) - 1
        launcher.say(
            f"metrics: http://127.0.0.1:{metrics_port}..{last}/metrics "
            f"({', '.join(SHOP.names)})"
        )
        # The gateway's replicas serve theirs on their HTTP ports, named above.
        more = [r for r in replicas if r.of > 1 and r.service != GATEWAY]
        if more:
            ports = ", ".join(f"{r.name} {r.metrics_port}" for r in more)
            launcher.say(f"metrics of the replicas: {ports}")
    launcher.say("try `ordersys demo` in another terminal; Ctrl-C stops everything")


def _ready_services(replicas: list[Replica]) -> str:
    """``notifications, ..., orders (2), gateway``: each service, and how many
    replicas of it when more than one."""
    counts = {r.service: r.of for r in replicas}
    return ", ".join(f"{s} ({n})" if n > 1 else s for s, n in counts.items())


def _demo_in_background(orders: int) -> None:
    def place() -> None:
        try:
            demo(orders)
        except OrdersysError as e:
            launcher.say(f"ordersys: error: the demo stopped: {e.message}", sys.stderr)

    threading.Thread(target=place, name="demo", daemon=True).start()


def _up_embedded(
    settings: ShopSettings, data_dir: Path, orders: int, stopping: threading.Event
) -> int:
    # Imported on use: the embedded mode is composed in a module of its own.
    from ordersys.shop.embedded import run_embedded

    def ready(url: str) -> None:
        launcher.say(f"all services ready (embedded, data in {data_dir})")
        launcher.say(f"API: {url} (OpenAPI and Swagger UI at /docs)")
        launcher.say("Ctrl-C stops everything")

    run_embedded(settings, data_dir, stopping=stopping, ready=ready, demo_orders=orders)
    launcher.say("all services stopped")
    return _leave_at_once()


def _replica_counts(specs: list[str] | None, settings: ShopSettings) -> dict[str, int]:
    """How many processes of each service ``--replicas`` asks for; raises
    :class:`InvalidInput` (exit status 2) for a bad one."""
    if not specs:
        return {}
    counts = parse_replicas(",".join(specs), SHOP.names)
    gateways = counts.get(GATEWAY, 1)
    if settings.gateway_port and settings.gateway_port + gateways - 1 > 65535:
        msg = (
            f"{gateways} gateways need the ports from ORDERSYS_GATEWAY_PORT="
            f"{settings.gateway_port} on, past 65535: choose a lower one"
        )
        raise InvalidInput(msg, field="gateway_port")
    return counts


def _gateway_environment(
    settings: ShopSettings, counts: Mapping[str, int]
) -> launcher.ReplicaEnvironment:
    """What a gateway replica is told: where it listens, gateway n on the
    configured port + n - 1 (each on one of its own picking, when that is 0);
    and, without ORDERSYS_JWT_SECRET, a signing key made for this run and
    shared, since each replica would otherwise refuse the others' tokens."""
    shared = {}
    if counts.get(GATEWAY, 1) > 1 and not settings.jwt_secret.get_secret_value():
        shared["ORDERSYS_JWT_SECRET"] = secrets.token_urlsafe(32)

    def environment(replica: Replica) -> dict[str, str]:
        if replica.service != GATEWAY or replica.of == 1:
            return {}
        first = settings.gateway_port
        port = first + replica.number - 1 if first else 0
        return {**shared, "ORDERSYS_GATEWAY_PORT": str(port)}

    return environment


def _apis(children: launcher.Children) -> list[str]:
    """Where each gateway listens, from its ready line."""
    found = [re.search(r"http://\S+", line) for line in children.ready_lines(GATEWAY)]
    return [api.group(0) if api else "(unknown)" for api in found]


@app.command()
def up(
    demo_orders: Annotated[
        int, typer.Option("--demo", metavar="N", min=0, help="Then place N orders.")
    ] = 0,
    metrics_port: Annotated[
        int,
        typer.Option(
            metavar="PORT", min=0, help="First port of the services' /metrics; 0: none."
        ),
    ] = 9101,
    replicas: Annotated[
        list[str] | None,
        typer.Option(
            metavar="SERVICE=N,...",
            help=(
                "Run N processes of SERVICE (e.g. orders=2,catalog=2), "
                "one of each other service."
            ),
        ),
    ] = None,
    embedded: Annotated[
        bool,
        typer.Option(
            help="Everything in this process, on SQLite files, with no servers."
        ),
    ] = False,
    data_dir: Annotated[
        Path | None,
        typer.Option(help="The embedded mode's files [ORDERSYS_DATA_DIR]."),
    ] = None,
) -> int:
    """Run every service (each in a process, or all in one with --embedded)."""
    settings = load_shop_settings()
    configure_logging(settings.log_level, settings.log_format)
    counts = _replica_counts(replicas, settings)
    if embedded and counts:
        msg = "--replicas runs services in processes of their own, not --embedded"
        raise InvalidInput(msg, field="replicas")
    stopping = threading.Event()
    stop_on_signals(stopping)
    if embedded:
        directory = data_dir or Path(settings.data_dir)
        return _up_embedded(settings, directory, demo_orders, stopping)
    children = launcher.start(
        SHOP.names,
        metrics_port=metrics_port,
        replicas=counts,
        environment=_gateway_environment(settings, counts),
        stopping=stopping,
        # Each child gives up on its own after the start-up timeout; this bound
        # is for one that hangs, and leaves room for slow imports on a busy host.
        ready_timeout=settings.startup_timeout + 180,
    )
    try:
        if stopping.is_set():
            return 0
        launcher.say(f"all services ready: {_ready_services(children.replicas)}")
        _banner(settings, _apis(children), metrics_port, children.replicas)
        if demo_orders:
            _demo_in_background(demo_orders)
        launcher.watch(children, stopping)
    except launcher.LaunchFailed:
        if not stopping.is_set():
            raise
    finally:
        launcher.stop(children)
    launcher.say("all services stopped")
    return _leave_at_once()


@app.command("demo")
def demo(
    orders: Annotated[int, typer.Option(min=0, help="How many orders.")] = 10,
) -> int:
    """Seed products and place orders through the running services."""
    from ordersys.transport.rabbitmq import KombuTransport

    settings = load_shop_settings()
    transport = KombuTransport.from_settings(settings)
    try:
        run_demo(transport, orders)
    finally:
        transport.close()
    return 0


def _error(message: str) -> None:
    print(f"ordersys: error: {message}", file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    command = typer.main.get_command(app)
    args = list(sys.argv[1:] if argv is None else argv)
    try:
        settings = load_shop_settings()
        configure_logging(settings.log_level, settings.log_format)
        result = command.main(args=args, prog_name="ordersys", standalone_mode=False)
    except typer.Exit as e:  # --help, --version
        return e.exit_code
    except typer.TyperException as e:  # a bad command line: exit status 2
        _error(e.format_message())
        return e.exit_code
    except typer.Abort:  # Ctrl-C or end of input at a prompt
        _error("aborted")
        return 130
    except InvalidInput as e:
        _error(e.message)
        return 2
    except OrdersysError as e:
        _error(e.message)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Whoever read our output is gone (a launcher stopping, `| head`):
        # nothing more can be said, and that is no error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
