"""The ``ordersys`` command line."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence

from ordersys import __version__, launcher
from ordersys.doctor import run_checks
from ordersys.errors import OrdersysError
from ordersys.messaging import cli as dlq
from ordersys.observability.logs import configure_logging
from ordersys.observability.tracing import configure_tracing, shutdown_tracing
from ordersys.settings import address_of, load_settings
from ordersys.shop.demo import run_demo
from ordersys.shop.services import SERVICES
from ordersys.transport.rabbitmq import KombuTransport


def doctor(_: argparse.Namespace) -> int:
    """Print which infrastructure is reachable, with versions."""
    settings = load_settings()
    checks = run_checks(settings)
    width = max(len(c.server) for c in checks)
    for check in checks:
        status = "ok  " if check.ok else "DOWN"
        print(f"{status} {check.server:<{width}}  {check.address:<22} {check.detail}")
    return 0 if all(c.ok for c in checks) else 1


def stop_on_signals(stopping: threading.Event) -> None:
    """Ctrl-C and SIGTERM set ``stopping``, also where SIGINT was inherited as
    ignored (a background job of a non-interactive shell)."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stopping.set())


def run(args: argparse.Namespace) -> int:
    """Run one service of the bundled system until SIGTERM or Ctrl-C."""
    settings = load_settings()
    configure_logging(settings.log_level, service=args.service)
    if settings.otlp_endpoint:
        configure_tracing(args.service, settings.otlp_endpoint)
    transport = KombuTransport(settings.rabbitmq_url, prefix=settings.messaging_prefix)
    service = SERVICES[args.service](settings, transport)
    stopping = threading.Event()
    stop_on_signals(stopping)
    with service:
        print(f"{service.name} ready, serving {len(service.handled())} message types")
        sys.stdout.flush()
        stopping.wait()
    shutdown_tracing()
    print(f"{service.name} stopped")
    return 0


def up(args: argparse.Namespace) -> int:
    """Run every service, each in its own process, until SIGTERM or Ctrl-C."""
    settings = load_settings()
    stopping = threading.Event()
    stop_on_signals(stopping)
    children = launcher.start(SERVICES, metrics_port=args.metrics_port)
    rabbitmq = address_of(settings.rabbitmq_url)
    launcher.say(f"all services ready: {', '.join(SERVICES)}")
    launcher.say(
        f"RabbitMQ {rabbitmq} (prefix {settings.messaging_prefix}), "
        f"PostgreSQL {settings.postgres_address}/{settings.postgres_dbname}"
    )
    if "gateway" in SERVICES:
        launcher.say(
            f"API: http://{settings.gateway_host}:{settings.gateway_port} "
            "(OpenAPI and Swagger UI at /docs)"
        )
    if args.metrics_port:
        last = args.metrics_port + len(SERVICES) - 1
        launcher.say(
            f"metrics: http://127.0.0.1:{args.metrics_port}..{last}/metrics "
            f"({', '.join(SERVICES)})"
        )
    launcher.say("try `ordersys demo` in another terminal; Ctrl-C stops everything")
    try:
        if args.demo:
            demo(argparse.Namespace(orders=args.demo))
        died = launcher.watch(children, stopping)
    finally:
        launcher.stop(children)
    if died:
        print(
            f"ordersys: error: {died} stopped on its own; stopped the others",
            file=sys.stderr,
        )
        return 1
    launcher.say("all services stopped")
    return 0


def demo(args: argparse.Namespace) -> int:
    """Seed products and place orders through the running services."""
    settings = load_settings()
    transport = KombuTransport(settings.rabbitmq_url, prefix=settings.messaging_prefix)
    try:
        run_demo(transport, args.orders)
    finally:
        transport.close()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ordersys", description="ordersys: event sourcing and order management"
    )
    parser.add_argument("--version", action="version", version=__version__)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "doctor", help="check that PostgreSQL, RabbitMQ and Redis are reachable"
    ).set_defaults(func=doctor)
    runner = commands.add_parser("run", help="run one service of the bundled system")
    runner.add_argument("service", choices=sorted(SERVICES), help="which one")
    runner.set_defaults(func=run)
    everything = commands.add_parser("up", help="run every service, each in a process")
    everything.add_argument(
        "--demo", type=int, default=0, metavar="N", help="then place N demo orders"
    )
    everything.add_argument(
        "--metrics-port",
        type=int,
        default=9101,
        metavar="PORT",
        help="first port of the services' /metrics (default 9101; 0: none)",
    )
    everything.set_defaults(func=up)
    demo_parser = commands.add_parser(
        "demo", help="place demo orders on running services"
    )
    demo_parser.add_argument("--orders", type=int, default=10)
    demo_parser.set_defaults(func=demo)
    dlq.add_commands(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        configure_logging(load_settings().log_level)
        code: int = args.func(args)
    except OrdersysError as e:
        print(f"ordersys: error: {e.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Whoever read our output is gone (a launcher stopping, `| head`):
        # nothing more can be said, and that is no error.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
