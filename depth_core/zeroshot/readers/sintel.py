"""MPI Sintel, training set: `training/depth/<scene>/frame_NNNN.dpt` with the rendered frames
`training/final/<scene>/frame_NNNN.png` (or `training/clean/` where final is absent).

`.dpt` is Sintel's depth format (its SDK's `depth_read`): little-endian float32 tag 202021.25,
int32 width, int32 height, then width * height float32 depths, row-major.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from depth_core.data.image_io import ImageReadError
from depth_core.zeroshot.readers.benchmark_files import (
    load_image,
    measured,
    refuse_split,
    require_entry_file,
    require_root,
)
from depth_core.zeroshot.samples import (
    BenchmarkReader,
    BenchmarkRootError,
    BenchmarkSample,
    SkippedFile,
)

DPT_TAG = np.float32(202021.25)
_HEADER = np.dtype([("tag", "<f4"), ("width", "<i4"), ("height", "<i4")])
IMAGE_PASSES = ("final", "clean")
DESCRIBE = (
    "MPI Sintel: a folder holding `training/` (or `training/` itself) with "
    "`depth/<scene>/frame_NNNN.dpt` and the frames `final/<scene>/frame_NNNN.png` "
    "(or `clean/`)"
)


def read_dpt(path: str | Path) -> np.ndarray:
    """A Sintel `.dpt` depth map as float32 (height, width); ImageReadError names the file
    when its tag or size is not what the format says."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ImageReadError(f"cannot read depth map {path}: {exc}") from exc
    if len(data) < _HEADER.itemsize:
        raise ImageReadError(f"depth map {path} is {len(data)} bytes, shorter than a .dpt header")
    header = np.frombuffer(data, dtype=_HEADER, count=1)[0]
    if header["tag"] != DPT_TAG:
        raise ImageReadError(
            f"depth map {path} starts with tag {float(header['tag'])}; expected {float(DPT_TAG)}"
        )
    width, height = int(header["width"]), int(header["height"])
    expected = _HEADER.itemsize + 4 * width * height
    if width <= 0 or height <= 0 or len(data) != expected:
        raise ImageReadError(
            f"depth map {path} is {len(data)} bytes for {width}x{height}; expected "
            f"{_HEADER.itemsize} + 4 * width * height"
        )
    values = np.frombuffer(data, dtype="<f4", offset=_HEADER.itemsize)
    return values.reshape(height, width).astype(np.float32)


def sintel_entries(root: Path, split: Path | None = None) -> list[str]:
    """The `.dpt` files' paths relative to `root`, sorted."""
    root = require_root(root, DESCRIBE)
    refuse_split("Sintel", split, DESCRIBE)
    training = root / "training" if (root / "training").is_dir() else root
    depth_dir = training / "depth"
    if not depth_dir.is_dir():
        raise BenchmarkRootError(f"{depth_dir} is not a folder; expected {DESCRIBE}")
    files = [path for path in depth_dir.glob("*/*.dpt") if path.is_file()]
    if not files:
        raise BenchmarkRootError(f"{depth_dir} holds no <scene>/*.dpt; expected {DESCRIBE}")
    return sorted(path.relative_to(root).as_posix() for path in files)


def sintel_load(root: Path, entry: str) -> BenchmarkSample:
    """The rendered frame (final pass, else clean) and its depth."""
    root = require_root(root, DESCRIBE)
    depth_path = root / entry
    scene_dir = depth_path.parent
    training = scene_dir.parent.parent  # training/depth/<scene>/frame_NNNN.dpt
    image_name = f"{depth_path.stem}.png"
    candidates = [training / kind / scene_dir.name / image_name for kind in IMAGE_PASSES]
    image_path = next((path for path in candidates if path.is_file()), None)
    if image_path is None:
        folders = " nor ".join(str(path.parent) for path in candidates)
        raise SkippedFile("missing", f"frame {image_name} is in neither {folders}")
    image = load_image(image_path)
    require_entry_file(depth_path, "depth map")
    try:
        depth = read_dpt(depth_path)
    except ImageReadError as exc:
        raise SkippedFile("corrupt", str(exc)) from exc
    depth, valid = measured(depth)
    return BenchmarkSample(name=entry, image=image, depth=depth, valid=valid)


READER = BenchmarkReader(name="sintel", entries=sintel_entries, load=sintel_load, describe=DESCRIBE)
