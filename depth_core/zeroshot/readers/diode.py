"""DIODE, the validation set as published: `val/{indoors,outdoor}/scene_*/scan_*/NAME.png`
beside `NAME_depth.npy` ((H, W, 1) float32 metres) and `NAME_depth_mask.npy` ((H, W), nonzero
where the scanner measured). The mask is the dataset's validity; depth 0 is also a hole.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from depth_core.zeroshot.readers.benchmark_files import (
    load_depth,
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

SCENE_TYPES = ("indoors", "outdoor")
DESCRIBE = (
    "DIODE's validation set: a folder holding `val/` (or `val/` itself, or one of its "
    "`indoors/` and `outdoor/` folders) with `scene_*/scan_*/NAME.png`, `NAME_depth.npy` "
    "((H, W, 1) float32 metres) and `NAME_depth_mask.npy` ((H, W) validity)"
)


def diode_entries(root: Path, split: Path | None = None) -> list[str]:
    """The images' paths relative to `root`, sorted."""
    root = require_root(root, DESCRIBE)
    refuse_split("DIODE", split, DESCRIBE)
    images = [
        path
        for folder in _scene_type_folders(root)
        for path in folder.glob("scene_*/scan_*/*.png")
        if path.is_file()
    ]
    if not images:
        raise BenchmarkRootError(f"{root} holds no scene_*/scan_*/*.png; expected {DESCRIBE}")
    return sorted(path.relative_to(root).as_posix() for path in images)


def diode_load(root: Path, entry: str) -> BenchmarkSample:
    """The image, its depth and the validity the dataset's mask gives it."""
    root = require_root(root, DESCRIBE)
    image_path = root / entry
    stem = image_path.stem
    depth_path = image_path.with_name(f"{stem}_depth.npy")
    mask_path = image_path.with_name(f"{stem}_depth_mask.npy")
    image = load_image(image_path)
    depth, hole_free = load_depth(depth_path)
    mask = _load_mask(mask_path, depth.shape)
    depth, valid = measured(depth, hole_free & mask)
    return BenchmarkSample(name=entry, image=image, depth=depth, valid=valid)


def _scene_type_folders(root: Path) -> list[Path]:
    base = root / "val" if (root / "val").is_dir() else root
    folders = [base / kind for kind in SCENE_TYPES if (base / kind).is_dir()]
    if not folders and any(path.is_dir() for path in base.glob("scene_*")):
        folders = [base]  # indoors/ or outdoor/ alone
    if not folders:
        raise BenchmarkRootError(
            f"{root} holds neither val/, indoors/, outdoor/ nor scene_* folders; "
            f"expected {DESCRIBE}"
        )
    return folders


def _load_mask(path: Path, shape: tuple[int, ...]) -> np.ndarray:
    require_entry_file(path, "validity mask")
    try:
        mask = np.load(path, allow_pickle=False)
    except Exception as exc:  # numpy raises ValueError, OSError, EOFError... for a bad file
        raise SkippedFile("corrupt", f"cannot read validity mask {path}: {exc}") from exc
    if mask.ndim == 3 and mask.shape[2] == 1:
        mask = mask[:, :, 0]
    if mask.shape != shape or not (np.issubdtype(mask.dtype, np.number) or mask.dtype == bool):
        raise SkippedFile(
            "corrupt", f"validity mask {path} is {mask.dtype} {mask.shape}; expected {shape}"
        )
    return mask > 0


READER = BenchmarkReader(name="diode", entries=diode_entries, load=diode_load, describe=DESCRIBE)
