"""Every program in examples/ runs: embedded, and on PostgreSQL and Redis."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))


@pytest.mark.parametrize("mode", [[], ["--postgres"]], ids=["embedded", "postgres"])
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda p: p.name)
def test_the_example_runs(example: Path, mode: list[str]) -> None:
    result = subprocess.run(
        [sys.executable, str(example), *mode],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-4000:]
    assert "Traceback" not in result.stderr
