"""The API reference builds from the docstrings with no warning, and documents
every name ``ordersys`` exports."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import ordersys

ROOT = Path(__file__).resolve().parent.parent


def test_the_reference_builds_strictly_and_documents_every_public_name(
    tmp_path: Path,
) -> None:
    site = tmp_path / "site"

    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )

    assert result.returncode == 0, result.stderr[-4000:]
    anchors = {
        anchor.rsplit(".", 1)[-1]
        for page in (site / "reference").rglob("*.html")
        for anchor in re.findall(r'id="ordersys[.\w]*\.(\w+)"', page.read_text())
    }
    public = {name for name in ordersys.__all__ if not name.startswith("__")}
    assert sorted(public - anchors) == []
