"""Structured logs: one JSON object per line, or a readable line in a terminal.

Context that should appear on every line of a unit of work (the service, a
correlation id, an order id) is bound with :func:`log_context` and carried by a
context variable, so it follows the work across function calls without being
passed around.
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

_context: ContextVar[dict[str, Any]] = ContextVar("ordersys_log_context", default={})  # noqa: B039


@contextmanager
def log_context(**fields: Any) -> Iterator[None]:
    """Add ``fields`` to every log record emitted inside the block."""
    token = _context.set({**_context.get(), **fields})
    try:
        yield
    finally:
        _context.reset(token)


class _ContextFilter(logging.Filter):
    def __init__(self, service: str | None = None) -> None:
        super().__init__()
        self.fields = {"service": service} if service else {}

    def filter(self, record: logging.LogRecord) -> bool:
        record.context = {**self.fields, **_context.get()}
        return True


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object: time, level, logger, message, context."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "context", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ConsoleFormatter(logging.Formatter):
    """A readable line for people: time, level, logger, message, then context."""

    def format(self, record: logging.LogRecord) -> str:
        context = " ".join(
            f"{k}={v}" for k, v in getattr(record, "context", {}).items()
        )
        line = (
            f"{datetime.fromtimestamp(record.created).strftime('%H:%M:%S.%f')[:-3]} "
            f"{record.levelname:<7} {record.name}: {record.getMessage()}"
        )
        if context:
            line += f"  [{context}]"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


def configure_logging(
    level: str = "INFO",
    *,
    json_lines: bool | None = None,
    stream: TextIO | None = None,
    service: str | None = None,
) -> None:
    """Send ordersys' logs to ``stream`` (stderr): JSON lines unless the stream
    is a terminal, where people read them; every line names ``service``."""
    stream = stream or sys.stderr
    if json_lines is None:
        json_lines = not stream.isatty()
    handler = logging.StreamHandler(stream)
    handler.addFilter(_ContextFilter(service))
    handler.setFormatter(JsonFormatter() if json_lines else ConsoleFormatter())
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
