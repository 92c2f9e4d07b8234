"""What every reader does with a benchmark's files, so that each turns the same failures into
the same errors: an unusable root or split file stops the benchmark (BenchmarkRootError), an
unusable entry is skipped (SkippedFile `missing` or `corrupt`) and the rest is still scored.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from depth_core.data.image_io import ImageReadError, read_depth, read_image
from depth_core.zeroshot.samples import BenchmarkRootError, SkippedFile


def require_root(root: str | Path, describe: str) -> Path:
    """`root` as a Path, or BenchmarkRootError when it is not a folder."""
    root = Path(root)
    if not root.is_dir():
        raise BenchmarkRootError(f"{root} is not a folder; expected {describe}")
    return root


def require_file(path: Path, what: str) -> Path:
    """`path`, or BenchmarkRootError naming it and what it should have held."""
    if not path.is_file():
        raise BenchmarkRootError(f"{path} does not exist; expected {what} there")
    return path


def split_file(root: Path, split: str | Path | None, default: str, what: str) -> Path:
    """The split file to read: `split` as given (absolute, or relative to the working directory,
    else to `root`), or `root / default` when no split is given."""
    if split is None:
        return require_file(root / default, what)
    split = Path(split)
    if split.is_absolute() or split.is_file():
        return require_file(split, what)
    if (root / split).is_file():
        return root / split
    raise BenchmarkRootError(
        f"split file {split} does not exist (nor {root / split}); expected {what} there"
    )


def refuse_split(benchmark: str, split: str | Path | None, describe: str) -> None:
    """Benchmarks read in full have no split file: one given is a mistake, not ignored."""
    if split is not None:
        raise BenchmarkRootError(
            f"{benchmark} has no split file (got {split}); expected {describe}"
        )


def split_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(1-based line number, whitespace-separated fields) of each line that is neither blank
    nor a `#` comment."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BenchmarkRootError(f"cannot read split file {path}: {exc}") from exc
    for number, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            yield number, stripped.split()


def require_entry_file(path: Path, what: str) -> Path:
    """`path`, or SkippedFile("missing") when the entry's file is not there."""
    if not path.is_file():
        raise SkippedFile("missing", f"{what} {path} does not exist")
    return path


def load_image(path: Path) -> np.ndarray:
    """An entry's picture as uint8 RGB, pixel-aligned with its ground truth (EXIF orientation
    is not applied: the ground truth is on the stored pixel grid)."""
    require_entry_file(path, "image")
    try:
        return read_image(path, apply_exif=False)
    except ImageReadError as exc:
        raise SkippedFile("corrupt", str(exc)) from exc


def load_depth(path: Path, scale: float | None = None) -> tuple[np.ndarray, np.ndarray]:
    """An entry's depth map in metres (raw value / `scale`) and its validity (0, NaN, inf are
    holes), through the project's one depth reader."""
    require_entry_file(path, "depth map")
    try:
        return read_depth(path, scale=scale)
    except ImageReadError as exc:
        raise SkippedFile("corrupt", str(exc)) from exc


def measured(depth: np.ndarray, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """float32 depth with 0 wherever it is not a positive finite value or not in `valid`,
    and the bool mask of the rest: the convention every reader returns."""
    depth = np.asarray(depth, dtype=np.float32)
    with np.errstate(invalid="ignore"):
        ok = np.isfinite(depth) & (depth > 0)
    if valid is not None:
        ok &= valid
    return np.where(ok, depth, np.float32(0.0)).astype(np.float32), ok
