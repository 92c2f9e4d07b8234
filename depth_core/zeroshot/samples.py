"""What a benchmark reader hands the protocol: one picture and its ground truth at a time.

Readers only read: they turn a benchmark's own files into `BenchmarkSample`s (image, planar
depth in metres, the dataset's own validity mask) and leave the crop, the depth range and the
alignment to `depth_core.zeroshot.protocol`, which applies them the same way to every reader.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from depth_core.data.source_files import SkippedFile


class BenchmarkRootError(ValueError):
    """A benchmark root that cannot be read at all (missing folder, split file or data file):
    the suite skips that benchmark with this message."""


@dataclass(frozen=True)
class BenchmarkSample:
    """One test image and its ground truth.

    `depth` is planar depth in metres at the ground truth's own resolution (which may differ
    from the image's: the prediction is resized to it); `valid` marks the pixels the dataset
    itself declares measured (mask files, sky, holes). Range caps and crops come later.
    """

    name: str  # the entry's path relative to the root, for messages and per-image tables
    image: np.ndarray  # (H, W, 3) uint8
    depth: np.ndarray  # (h, w) float32 metres
    valid: np.ndarray  # (h, w) bool


@dataclass(frozen=True)
class BenchmarkReader:
    """How one benchmark is read: `entries(root, split)` lists what the split names (raising
    BenchmarkRootError when the root is unusable), `load(root, entry)` reads one entry
    (raising SkippedFile with code `corrupt`, `missing` or `no_ground_truth` for an entry that
    cannot be scored). `split` overrides the default split file, where the benchmark has one."""

    name: str
    entries: Callable[[Path, Path | None], list[Any]]
    load: Callable[[Path, Any], BenchmarkSample]
    describe: str  # the expected root, for --help and error messages
    entry_name: Callable[[Any], str] = str  # an entry as a person reads it (its image path)
    takes_split: bool = False  # whether `split` may name another split file


__all__ = ["BenchmarkReader", "BenchmarkRootError", "BenchmarkSample", "SkippedFile"]
