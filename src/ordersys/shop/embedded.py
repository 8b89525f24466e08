"""The embedded shop: every service and the gateway in this process, with no
server at all.

Events, read models, the consumers' records and the relays' positions are
SQLite files in a data directory, so the shop's state survives a restart;
requests and events cross the in-process transport; the read-model cache and
the gateway's own state are in memory. The HTTP API is the same as over the
servers (``gateway_host``/``gateway_port``, 8000 by default).

``python -m ordersys.shop.embedded --data-dir DIR [--port N] [--demo N]``
runs it until SIGTERM or Ctrl-C; ``ordersys up --embedded`` is the same.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import sys
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import SecretStr

from ordersys.errors import OrdersysError
from ordersys.observability.logs import configure_logging
from ordersys.shop.demo import run_demo
from ordersys.shop.gateway.composition import GatewayService
from ordersys.shop.settings import ShopSettings, load_shop_settings
from ordersys.shop.system import SHOP
from ordersys.signals import stop_on_signals
from ordersys.system import Embedded

logger = logging.getLogger("ordersys.shop.embedded")

SECRET_FILE = "jwt-secret"
"""The gateway's token key, kept in the data directory (when none is set), so
that a token outlives a restart as it would over the servers."""


def embedded_settings(settings: ShopSettings, data_dir: Path) -> ShopSettings:
    """``settings`` for the embedded mode: SQLite files in ``data_dir``, and
    no /metrics port per service (the gateway serves its own /metrics)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    update: dict[str, object] = {
        "persistence": "sqlite",
        "sqlite_path": str(data_dir),
        "data_dir": str(data_dir),
        "metrics_port": 0,
    }
    if not settings.jwt_secret.get_secret_value():
        update["jwt_secret"] = SecretStr(_kept_secret(data_dir / SECRET_FILE))
    return settings.model_copy(update=update)


def _kept_secret(path: Path) -> str:
    if not path.exists():
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(48))
    return path.read_text().strip()


def run_embedded(
    settings: ShopSettings,
    data_dir: Path,
    *,
    stopping: threading.Event,
    ready: Callable[[str], None],
    demo_orders: int = 0,
) -> None:
    """Run the shop in this process on the files in ``data_dir``: call
    ``ready`` with the API's URL once every service answers, place
    ``demo_orders`` demo orders (in the background), and return once
    ``stopping`` is set and everything has stopped."""
    system = SHOP.embedded(embedded_settings(settings, data_dir))
    with system:
        ready(_gateway(system).url)
        if demo_orders:
            _demo_in_background(system, demo_orders)
        stopping.wait()


def _gateway(system: Embedded) -> GatewayService:
    gateway = system["gateway"]
    assert isinstance(gateway, GatewayService)
    return gateway


def _demo_in_background(system: Embedded, orders: int) -> None:
    def place() -> None:
        try:
            run_demo(system.transport, orders)
        except OrdersysError as e:
            logger.error("the demo stopped: %s", e.message)

    threading.Thread(target=place, name="demo", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ordersys.shop.embedded", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--data-dir", type=Path, required=True, metavar="DIR")
    parser.add_argument("--port", type=int, metavar="N", help="API port (0: any)")
    parser.add_argument("--demo", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)
    try:
        overrides = {} if args.port is None else {"gateway_port": args.port}
        settings = load_shop_settings(overrides)
    except OrdersysError as e:
        print(f"ordersys embedded: {e.message}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format, service="embedded")
    stopping = threading.Event()
    stop_on_signals(stopping)

    def ready(url: str) -> None:
        print(f"ordersys embedded: API at {url} (data in {args.data_dir})", flush=True)

    try:
        run_embedded(
            settings,
            args.data_dir,
            stopping=stopping,
            ready=ready,
            demo_orders=args.demo,
        )
    except OrdersysError as e:
        print(f"ordersys embedded: {e.message}", file=sys.stderr)
        return 1
    print("ordersys embedded: stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
