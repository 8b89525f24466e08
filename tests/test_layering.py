"""The layering rules of the package, as import-linter contracts.

The contracts live in pyproject.toml (``[tool.importlinter]``): framework
modules import nothing from ``ordersys.shop``, and the shop imports no kombu
or psycopg itself (it uses what the framework hands it).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"


def test_every_layering_contract_is_kept() -> None:
    # When import-linter checks the package's imports against the contracts
    result = subprocess.run(
        [str(LINT_IMPORTS), str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )

    # Then every one is kept (a broken one's output names each import and line)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Contracts: 3 kept, 0 broken." in result.stdout
