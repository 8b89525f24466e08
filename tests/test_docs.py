"""Every ```python block in README.md and docs/*.md runs.

The blocks of one file run in order as one script, in a fresh interpreter, as
``__main__`` (so the event classes a page defines have importable topics).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text())


@pytest.mark.parametrize(
    "page",
    [p for p in PAGES if python_blocks(p)],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_the_code_in_the_page_runs(page: Path, tmp_path: Path) -> None:
    script = tmp_path / f"{page.stem}.py"
    script.write_text("\n".join(python_blocks(page)))

    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert result.returncode == 0, f"{page.name} failed:\n{result.stderr[-4000:]}"


def test_every_setting_is_documented() -> None:
    from ordersys.settings import ENV_PREFIX, Settings

    page = (ROOT / "docs" / "configuration.md").read_text()
    missing = [
        ENV_PREFIX + name.upper()
        for name in Settings.model_fields
        if ENV_PREFIX + name.upper() not in page
    ]

    assert missing == [], f"add these to docs/configuration.md: {missing}"
