"""The ``ordersys`` command line."""

from __future__ import annotations

import argparse
import contextlib
import signal
import sys
import threading
from collections.abc import Sequence

from ordersys import __version__
from ordersys.doctor import run_checks
from ordersys.errors import OrdersysError
from ordersys.messaging import cli as dlq
from ordersys.observability.logs import configure_logging
from ordersys.settings import load_settings
from ordersys.shop.services import SERVICES
from ordersys.transport import KombuTransport


def doctor(_: argparse.Namespace) -> int:
    """Print which infrastructure is reachable, with versions."""
    settings = load_settings()
    checks = run_checks(settings)
    width = max(len(c.server) for c in checks)
    for check in checks:
        status = "ok  " if check.ok else "DOWN"
        print(f"{status} {check.server:<{width}}  {check.address:<22} {check.detail}")
    return 0 if all(c.ok for c in checks) else 1


def run(args: argparse.Namespace) -> int:
    """Run one service of the bundled system until SIGTERM or Ctrl-C."""
    settings = load_settings()
    transport = KombuTransport(settings.rabbitmq_url, prefix=settings.messaging_prefix)
    service = SERVICES[args.service](settings, transport)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    with service:
        print(f"{service.name} ready, serving {len(service.handled())} message types")
        sys.stdout.flush()
        with contextlib.suppress(KeyboardInterrupt):
            stopping.wait()
    print(f"{service.name} stopped")
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
    return code


if __name__ == "__main__":
    sys.exit(main())
