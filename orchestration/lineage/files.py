"""Small file helpers for stage outputs: atomic JSON writes and content hashes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from depth_core.atomic_io import write_json
from depth_core.file_digest import file_digest


def write_json_atomic(path: Path, data: Any) -> Path:
    """A stage's JSON output (metrics, fingerprints, tables) with sorted keys: stable DVC diffs."""
    return write_json(path, data, sort_keys=True)


def md5_file(path: Path) -> str:
    """The file's md5, the same digest DVC records for a file output."""
    return file_digest(path, "md5")
