"""``python -m bench system``'s load generator: wrk with bench/system_orders.lua,
checked against the benchmark's bare uvicorn endpoint (no services needed)."""

from __future__ import annotations

import os
import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import system

needs_wrk = pytest.mark.skipif(shutil.which("wrk") is None, reason="wrk not installed")


@pytest.fixture(scope="module")
def bare() -> Iterator[str]:
    port = system.free_port()
    process = system.serve_bare(port)
    yield f"http://127.0.0.1:{port}"
    process.terminate()
    process.wait(10)


def test_without_wrk_the_benchmark_refuses_to_run_and_says_why(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given a PATH on which there is no wrk
    monkeypatch.setenv("PATH", str(Path(sys.executable).parent))
    assert shutil.which("wrk") is None

    # When the system benchmark is asked to run
    code = system.main(["--seconds", "1"])

    # Then it measures nothing: a non-zero exit code and a message naming wrk
    err = capsys.readouterr().err
    assert code != 0
    assert "needs wrk" in err
    assert "Traceback" not in err


@needs_wrk
def test_a_paced_run_sends_a_constant_rate_and_reports_its_latency(bare: str) -> None:
    # Given wrk paced at 100 requests/s
    load = system.Wrk(
        bare, "/bare", ["t1", "t2"], ["p1"], connections=8, seconds=2, rate=100
    )

    # When it has run for its 2 s
    figures = load.result()

    # Then it sent about 200 requests, every one answered, with latencies in ms
    assert 180 <= figures["requests"] <= 205
    assert figures["answered_2xx"] == figures["requests"]
    assert figures["errors"] == {}
    assert 0 < figures["p50_ms"] <= figures["p99_ms"] <= figures["max_ms"]


@needs_wrk
def test_a_gated_run_sends_no_more_than_the_gate_allows(
    bare: str, tmp_path: Path
) -> None:
    # Given a gate that allows 50 requests at once and 100/s more after that
    gate = tmp_path / "gate"
    gate.write_text("50 100\n")
    stop = threading.Event()

    def open_the_gate() -> None:
        began = time.monotonic()
        while not stop.wait(0.05):
            allowed = 50 + int(100 * (time.monotonic() - began))
            (tmp_path / "next").write_text(f"{allowed} 100\n")
            os.replace(tmp_path / "next", gate)

    opener = threading.Thread(target=open_the_gate, daemon=True)
    opener.start()

    # When 64 connections could send back to back for 2 s
    load = system.Wrk(bare, "/bare", ["t"], ["p"], connections=64, seconds=2, gate=gate)
    figures = load.result()
    stop.set()
    opener.join()

    # Then they sent about what the gate allowed (a bare endpoint's closed
    # loop answers thousands a second here)
    assert 200 <= figures["requests"] <= 260
