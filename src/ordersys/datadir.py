"""The embedded mode's data directory: where its SQLite files live, checked
before the system starts (``ordersys doctor --embedded``)."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ordersys.doctor import Check

MIN_FREE_BYTES = 100 * 1024 * 1024
"""Less free space than this is reported as a problem."""


def _existing_ancestor(path: Path) -> Path:
    while not path.exists():
        path = path.parent
    return path


def _writable(directory: Path) -> bool:
    try:
        with tempfile.TemporaryFile(dir=directory):
            return True
    except OSError:
        return False


def check_data_dir(path: Path) -> Check:
    """Whether ``path`` exists (or can be created), can be written, and has
    room; never raises."""
    path = path.expanduser().absolute()
    shown = str(path)
    if path.exists() and not path.is_dir():
        return Check("data dir", shown, False, "exists and is not a directory")
    ancestor = _existing_ancestor(path)
    if not (os.access(ancestor, os.W_OK | os.X_OK) and _writable(ancestor)):
        what = (
            "is not writable"
            if ancestor == path
            else f"cannot be created in {ancestor}"
        )
        return Check("data dir", shown, False, what)
    free = shutil.disk_usage(ancestor).free
    state = "writable" if ancestor == path else "will be created"
    detail = f"{state}, {free / 1e9:.1f} GB free"
    if free < MIN_FREE_BYTES:
        return Check("data dir", shown, False, f"{detail} (less than 100 MB)")
    return Check("data dir", shown, True, detail)
