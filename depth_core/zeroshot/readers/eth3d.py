"""ETH3D high-resolution multi-view training set, DSLR images with their laser-scan depth.

Each scene holds `images/dslr_images_undistorted/DSC_xxxx.JPG` (or `images/dslr_images/`) and
`ground_truth_depth/dslr_images/DSC_xxxx.JPG`; despite its name the depth file is raw
little-endian float32, row-major, at the image's resolution, with inf where the scan has no
depth (https://www.eth3d.net/documentation, multi-view image formats).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

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

DEPTH_FOLDER = "ground_truth_depth"
IMAGE_FOLDERS = ("images/dslr_images_undistorted", "images/dslr_images")
DESCRIBE = (
    "ETH3D's high-res multi-view training scenes (at any depth below the root), each with "
    "`ground_truth_depth/dslr_images/DSC_*.JPG` (raw float32 depth, inf = none) and "
    "`images/dslr_images_undistorted/DSC_*.JPG` (or `images/dslr_images/`)"
)


def eth3d_entries(root: Path, split: Path | None = None) -> list[str]:
    """The depth files' paths relative to `root`, sorted."""
    root = require_root(root, DESCRIBE)
    refuse_split("ETH3D", split, DESCRIBE)
    depth_files = [
        path
        for folder in root.rglob(DEPTH_FOLDER)
        if (folder / "dslr_images").is_dir()
        for path in (folder / "dslr_images").iterdir()
        if path.is_file() and not path.name.startswith(".")
    ]
    if not depth_files:
        raise BenchmarkRootError(
            f"{root} holds no {DEPTH_FOLDER}/dslr_images/ with depth files; expected {DESCRIBE}"
        )
    return sorted(path.relative_to(root).as_posix() for path in depth_files)


def eth3d_load(root: Path, entry: str) -> BenchmarkSample:
    """The DSLR image and its depth map, which must cover the image pixel for pixel."""
    root = require_root(root, DESCRIBE)
    depth_path = root / entry
    scene = depth_path.parent.parent.parent  # <scene>/ground_truth_depth/dslr_images/NAME
    image = load_image(_find_image(scene, depth_path.name))
    height, width = image.shape[:2]
    require_entry_file(depth_path, "depth map")
    size = depth_path.stat().st_size
    if size != height * width * 4:
        raise SkippedFile(
            "corrupt",
            f"depth map {depth_path} holds {size} bytes; expected {height * width * 4} "
            f"(float32 for each pixel of the {width}x{height} image)",
        )
    try:
        raw = np.fromfile(depth_path, dtype="<f4")
    except OSError as exc:
        raise SkippedFile("corrupt", f"cannot read depth map {depth_path}: {exc}") from exc
    depth, valid = measured(raw.reshape(height, width))
    return BenchmarkSample(name=entry, image=image, depth=depth, valid=valid)


def _find_image(scene: Path, name: str) -> Path:
    candidates = [scene / folder / name for folder in IMAGE_FOLDERS]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    raise SkippedFile(
        "missing", f"image {name} is in neither {' nor '.join(str(c.parent) for c in candidates)}"
    )


READER = BenchmarkReader(name="eth3d", entries=eth3d_entries, load=eth3d_load, describe=DESCRIBE)
