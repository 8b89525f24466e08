"""The optional parts of ordersys, and the error that names the one missing.

The core install has no server client: each adapter comes with an extra
(``pip install 'ordersys[postgres]'``, ...). An adapter module imports its
client inside :func:`needs`, so that using it without the extra raises
:class:`MissingExtra`, which says what to install, instead of a bare
``ModuleNotFoundError`` about a module the user never named.
"""

from __future__ import annotations

import contextlib
import importlib.util
import sys
from collections.abc import Iterator
from typing import Any

from ordersys.errors import InvalidInput

EXTRAS: dict[str, tuple[str, ...]] = {
    "postgres": ("psycopg", "psycopg_pool"),
    "rabbitmq": ("kombu", "amqp"),
    "redis": ("redis",),
    "observability": ("prometheus_client", "opentelemetry"),
}
"""The top-level modules each extra installs, by extra."""


class MissingExtra(InvalidInput, ImportError):
    """A part of ordersys was used whose extra is not installed.

    An :class:`ImportError` too, since it is raised where the adapter imports
    its client: ``except ImportError`` keeps working.
    """

    code = "missing_extra"

    def __init__(self, feature: str, extra: str) -> None:
        super().__init__(
            f"{feature} needs the {extra} extra: pip install 'ordersys[{extra}]'",
            feature=feature,
            extra=extra,
        )
        self.feature = feature
        self.extra = extra


def installed(extra: str) -> bool:
    """Whether the modules of ``extra`` can be imported (without importing them)."""
    return all(importlib.util.find_spec(module) for module in EXTRAS[extra])


def loaded_class(module: str, name: str) -> type[Any] | None:
    """The class ``module.name`` if ``module`` is imported already, else None.

    For telling an adapter's objects (relays, consumers) apart without
    importing the adapter, which would need its extra: nothing can be an
    instance of a class whose module was never imported.
    """
    found = getattr(sys.modules.get(module), name, None)
    return found if isinstance(found, type) else None


@contextlib.contextmanager
def needs(extra: str, feature: str) -> Iterator[None]:
    """Turn the failed import of one of ``extra``'s modules, inside the block,
    into :class:`MissingExtra`; any other failed import is a bug and stays one."""
    try:
        yield
    except ModuleNotFoundError as e:
        if (e.name or "").split(".")[0] not in EXTRAS[extra]:
            raise
        raise MissingExtra(feature, extra) from None
