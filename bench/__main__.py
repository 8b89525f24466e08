"""Run one benchmark: ``python -m bench <name> [options]``.

Imports ``bench.<name>`` and calls its ``main(argv)`` with the remaining
arguments, so a new benchmark is just a new module with a ``main``.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name[0] != "_")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in available():
        print("usage: python -m bench <name> [options]", file=sys.stderr)
        print("benchmarks: " + ", ".join(available()), file=sys.stderr)
        return 2
    module = importlib.import_module(f"bench.{argv[0]}")
    return int(module.main(argv[1:]) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
