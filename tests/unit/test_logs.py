"""Structured logs carry the bound context on every line."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest

from ordersys.observability.logs import configure_logging, log_context
from ordersys.transport import Envelope, handling


@pytest.fixture
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    root.handlers, root.level = handlers, level


def test_a_json_line_holds_the_message_and_the_bound_context(
    restore_logging: None,
) -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out)

    with log_context(service="orders", correlation_id="c-1"):
        with log_context(order_id="o-9"):
            logging.getLogger("ordersys.test").info("order %s placed", "o-9")
        logging.getLogger("ordersys.test").warning("outside the order")

    first, second = (json.loads(line) for line in out.getvalue().splitlines())
    assert first["message"] == "order o-9 placed"
    assert (first["service"], first["correlation_id"], first["order_id"]) == (
        "orders",
        "c-1",
        "o-9",
    )
    assert first["level"] == "INFO"
    assert "order_id" not in second


class Terminal(io.StringIO):
    """What a terminal looks like to the logs."""

    def isatty(self) -> bool:
        return True


@pytest.fixture
def no_color_preference(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)


def test_auto_writes_json_when_the_output_is_not_a_terminal(
    restore_logging: None,
) -> None:
    out = io.StringIO()
    configure_logging("INFO", "auto", stream=out)

    logging.getLogger("ordersys.test").info("to a file")

    assert json.loads(out.getvalue())["message"] == "to a file"


def test_auto_writes_coloured_lines_on_a_terminal(
    restore_logging: None, no_color_preference: None
) -> None:
    out = Terminal()
    configure_logging("INFO", "auto", stream=out)

    logging.getLogger("ordersys.test").warning("disk nearly full")

    line = out.getvalue().rstrip()
    assert "\x1b[33mWARNING" in line
    assert line.endswith("disk nearly full")


def test_no_color_leaves_a_terminal_line_plain(
    restore_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    out = Terminal()
    configure_logging("INFO", "auto", stream=out)

    logging.getLogger("ordersys.test").info("plain")

    assert "\x1b[" not in out.getvalue()
    assert out.getvalue().rstrip().endswith("INFO    ordersys.test: plain")


def test_json_is_kept_on_a_terminal_when_asked_for(restore_logging: None) -> None:
    out = Terminal()
    configure_logging("INFO", "json", stream=out)

    logging.getLogger("ordersys.test").info("for a collector")

    assert json.loads(out.getvalue())["level"] == "INFO"


def test_a_console_line_is_readable(
    restore_logging: None, no_color_preference: None
) -> None:
    out = io.StringIO()
    configure_logging("DEBUG", "console", stream=out)

    with log_context(service="catalog"):
        logging.getLogger("ordersys.test").debug("stock added")

    assert (
        out.getvalue()
        .rstrip()
        .endswith("ordersys.test: stock added  [service=catalog]")
    )


def test_a_message_being_handled_names_its_service_order_and_correlation(
    restore_logging: None,
) -> None:
    out = io.StringIO()
    configure_logging("INFO", "json", stream=out, service="payments")
    envelope = Envelope.new("payment.capture", {"order_id": "o-7", "amount_cents": 5})

    with handling(envelope):
        logging.getLogger("ordersys.test").info("charging")

    (line,) = (json.loads(line) for line in out.getvalue().splitlines())
    assert (line["service"], line["order_id"], line["message_type"]) == (
        "payments",
        "o-7",
        "payment.capture",
    )
    assert line["correlation_id"] == envelope.headers["correlation_id"]
