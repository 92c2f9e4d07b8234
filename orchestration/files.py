"""Small file helpers for stage outputs: atomic writes and content hashes."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from depth_core.atomic_io import atomic_write
from depth_core.file_digest import file_digest


def _json_safe(value: Any) -> Any:
    """NaN/inf are not JSON: they become null so DVC and browsers can read the file."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        return _json_safe(value.item())
    return value


def write_json_atomic(path: Path, data: Any) -> Path:
    return atomic_write(path, json.dumps(_json_safe(data), indent=2, sort_keys=True) + "\n")


def md5_file(path: Path) -> str:
    """The file's md5, the same digest DVC records for a file output."""
    return file_digest(path, "md5")
