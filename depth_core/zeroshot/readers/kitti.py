"""KITTI, Eigen test split: frames of the raw drives scored against the KITTI depth release's
projected LiDAR, as listed in `eigen_test_files_with_gt.txt` (697 lines `RGB GT FOCAL`; GT is
`None` for the frames the depth release does not cover).

The depth release splits its drives into `train/` and `val/`, so a listed ground truth path
is looked up under the root itself, then under each of those folders.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from depth_core.zeroshot.readers.benchmark_files import (
    load_depth,
    load_image,
    require_root,
    split_file,
    split_lines,
)
from depth_core.zeroshot.samples import (
    BenchmarkReader,
    BenchmarkRootError,
    BenchmarkSample,
    SkippedFile,
)

SPLIT_NAME = "eigen_test_files_with_gt.txt"
GROUND_TRUTH_FOLDERS = (
    "",
    "data_depth_annotated/train",
    "data_depth_annotated/val",
    "train",
    "val",
)
DEPTH_SCALE = 256.0  # 16-bit PNG: value / 256 = metres, 0 = no measurement
DESCRIBE = (
    "the KITTI raw tree (`2011_09_26/2011_09_26_drive_0002_sync/image_02/data/*.png`, ...) "
    "with the KITTI depth release's `*_sync/proj_depth/groundtruth/image_02/*.png` beside it, "
    "directly or under `data_depth_annotated/{train,val}` or `{train,val}`, and the Eigen "
    f"split file {SPLIT_NAME} (lines `RGB_PATH GT_PATH FOCAL`, GT `None` where there is none)"
)
_SPLIT_WHAT = f"the Eigen test split ({SPLIT_NAME}: lines `RGB_PATH GT_PATH FOCAL`)"


@dataclass(frozen=True)
class KittiEntry:
    """One line of the split: paths as listed, `depth` None where the split has no ground
    truth, `focal` in pixels."""

    image: str
    depth: str | None
    focal: float


def kitti_entries(root: Path, split: Path | None = None) -> list[KittiEntry]:
    """Every line of the split, those without ground truth included (they load as skipped)."""
    root = require_root(root, DESCRIBE)
    path = split_file(root, split, SPLIT_NAME, _SPLIT_WHAT)
    entries = []
    for number, fields in split_lines(path):
        if len(fields) != 3:
            raise BenchmarkRootError(
                f"{path} line {number}: {len(fields)} fields; expected RGB_PATH GT_PATH FOCAL"
            )
        image, depth, focal = fields
        try:
            focal_px = float(focal)
        except ValueError:
            focal_px = math.nan
        if not (math.isfinite(focal_px) and focal_px > 0):
            raise BenchmarkRootError(
                f"{path} line {number}: focal length {focal!r} is not a positive number"
            )
        entries.append(KittiEntry(image, None if depth == "None" else depth, focal_px))
    return entries


def kitti_load(root: Path, entry: KittiEntry) -> BenchmarkSample:
    """The frame and its ground truth (metres, 0 and invalid where LiDAR measured nothing)."""
    root = require_root(root, DESCRIBE)
    if entry.depth is None:
        raise SkippedFile("no_ground_truth", f"{entry.image}: the split lists no ground truth")
    depth_path = _find_ground_truth(root, entry.depth)
    image = load_image(root / entry.image)
    depth, valid = load_depth(depth_path, scale=DEPTH_SCALE)
    return BenchmarkSample(name=entry.image, image=image, depth=depth, valid=valid)


def _find_ground_truth(root: Path, listed: str) -> Path:
    candidates = [root / folder / listed for folder in GROUND_TRUTH_FOLDERS]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    folders = ", ".join(str(root / folder) for folder in GROUND_TRUTH_FOLDERS)
    raise SkippedFile("missing", f"ground truth {listed} is in none of {folders}")


READER = BenchmarkReader(
    name="kitti",
    entries=kitti_entries,
    load=kitti_load,
    describe=DESCRIBE,
    entry_name=lambda entry: entry.image,
    takes_split=True,
)
