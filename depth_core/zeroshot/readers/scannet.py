"""ScanNet test frames listed in a file of `COLOR_PATH DEPTH_PATH` lines relative to the root
(e.g. `scene0707_00/color/000000.jpg scene0707_00/depth/000000.png`). Depth is ScanNet's
16-bit PNG in millimetres, 0 where the sensor measured nothing, at the depth camera's own
resolution (640 x 480), which differs from the colour frames' (1296 x 968).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from depth_core.zeroshot.readers.benchmark_files import (
    load_depth,
    load_image,
    require_root,
    split_file,
    split_lines,
)
from depth_core.zeroshot.samples import BenchmarkReader, BenchmarkRootError, BenchmarkSample

SPLIT_NAME = "scannet_test.txt"
DEPTH_SCALE = 1000.0  # millimetres per metre
DESCRIBE = (
    "ScanNet scenes (`scene*/color/*.jpg`, `scene*/depth/*.png` 16-bit millimetres) with the "
    f"list file {SPLIT_NAME} of `COLOR_PATH DEPTH_PATH` lines relative to the root"
)
_SPLIT_WHAT = f"the ScanNet test list ({SPLIT_NAME}: lines `COLOR_PATH DEPTH_PATH`)"


@dataclass(frozen=True)
class ScanNetEntry:
    """One line of the list: the colour frame and its depth map, relative to the root."""

    image: str
    depth: str


def scannet_entries(root: Path, split: Path | None = None) -> list[ScanNetEntry]:
    """Every line of the list, in order."""
    root = require_root(root, DESCRIBE)
    path = split_file(root, split, SPLIT_NAME, _SPLIT_WHAT)
    entries = []
    for number, fields in split_lines(path):
        if len(fields) != 2:
            raise BenchmarkRootError(
                f"{path} line {number}: {len(fields)} fields; expected COLOR_PATH DEPTH_PATH"
            )
        entries.append(ScanNetEntry(*fields))
    return entries


def scannet_load(root: Path, entry: ScanNetEntry) -> BenchmarkSample:
    """The colour frame and its depth map (metres), each at its own resolution."""
    root = require_root(root, DESCRIBE)
    image = load_image(root / entry.image)
    depth, valid = load_depth(root / entry.depth, scale=DEPTH_SCALE)
    return BenchmarkSample(name=entry.image, image=image, depth=depth, valid=valid)


READER = BenchmarkReader(
    name="scannet",
    entries=scannet_entries,
    load=scannet_load,
    describe=DESCRIBE,
    entry_name=lambda entry: entry.image,
    takes_split=True,
)
