"""Every ```python block in README.md and docs/*.md runs, and passes
``mypy --strict``.

The blocks of one file run in order as one script, in a fresh interpreter, as
``__main__`` (so the event classes a page defines have importable topics),
with ``ORDERSYS_POSTGRES_*`` naming a schema of its own in the test database
(a page that uses PostgreSQL through ``load_settings()`` writes only there).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ordersys.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```", re.MULTILINE | re.DOTALL)


def python_blocks(page: Path) -> list[str]:
    return BLOCK.findall(page.read_text())


def page_script(page: Path) -> str:
    """The page's blocks as the one script they are run as."""
    return "\n".join(python_blocks(page))


def test_the_code_in_every_page_passes_mypy_strict(tmp_path: Path) -> None:
    scripts = []
    for page in PAGES:
        if python_blocks(page):
            # A module name of its own per page, as mypy checks them together.
            script = tmp_path / f"page_{page.stem.lower().replace('-', '_')}.py"
            script.write_text(page_script(page))
            scripts.append(str(script))

    config = str(ROOT / "pyproject.toml")

    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--config-file", config, *scripts],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert result.returncode == 0, result.stdout[-6000:]


@pytest.mark.parametrize(
    "page",
    [p for p in PAGES if python_blocks(p)],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_the_code_in_the_page_runs(
    page: Path, tmp_path: Path, pg_settings: Settings
) -> None:
    script = tmp_path / f"{page.stem}.py"
    script.write_text(page_script(page))
    database = {
        "ORDERSYS_POSTGRES_DBNAME": pg_settings.postgres_dbname,
        "ORDERSYS_POSTGRES_SCHEMA": pg_settings.postgres_schema,
    }

    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        env={**os.environ, **database},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )

    assert result.returncode == 0, f"{page.name} failed:\n{result.stderr[-4000:]}"


def test_every_setting_is_documented() -> None:
    from ordersys.settings import ENV_PREFIX
    from ordersys.shop.settings import ShopSettings

    page = (ROOT / "docs" / "configuration.md").read_text()
    missing = [
        ENV_PREFIX + name.upper()
        for name in ShopSettings.model_fields  # the framework's and the shop's
        if ENV_PREFIX + name.upper() not in page
    ]

    assert missing == [], f"add these to docs/configuration.md: {missing}"
