"""NYU Depth V2: the 654 test images of the official split, read from the labeled MATLAB file.

`nyu_depth_v2_labeled.mat` is MATLAB v7.3 (HDF5), and HDF5 sees MATLAB's column-major arrays
with their axes reversed: `images` is (1449, 3, 640, 480) and `depths` (1449, 640, 480), so
each image and depth map is transposed back to 480 x 640. `splits.mat` (MATLAB v5 as published;
a v7.3 copy also reads) lists the test images 1-based in `testNdxs`.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from depth_core.zeroshot.readers.benchmark_files import (
    measured,
    require_file,
    require_root,
    split_file,
)
from depth_core.zeroshot.samples import (
    BenchmarkReader,
    BenchmarkRootError,
    BenchmarkSample,
    SkippedFile,
)

LABELED_NAME = "nyu_depth_v2_labeled.mat"
SPLITS_NAME = "splits.mat"
DESCRIBE = (
    f"a folder holding NYU Depth V2's {LABELED_NAME} (MATLAB v7.3: `images` uint8 and "
    f"`depths` in metres for 1449 frames) and the official {SPLITS_NAME} (`testNdxs`: the 654 "
    "test frames, 1-based)"
)
_LABELED_WHAT = "NYU Depth V2's labeled file (MATLAB v7.3 with `images` and `depths`)"
_SPLITS_WHAT = "NYU Depth V2's splits.mat (with `testNdxs`)"


def nyu_entries(root: Path, split: Path | None = None) -> list[int]:
    """The 0-based indices of the test frames, in the split file's order."""
    root = require_root(root, DESCRIBE)
    labeled = require_file(root / LABELED_NAME, _LABELED_WHAT)
    splits = split_file(root, split, SPLITS_NAME, _SPLITS_WHAT)
    count = _frame_count(labeled)
    indices = _test_indices(splits)
    outside = indices[(indices < 1) | (indices > count)]
    if outside.size:
        raise BenchmarkRootError(
            f"{splits}: testNdxs holds {outside[:5].tolist()} outside 1..{count}, the frames "
            f"of {labeled}"
        )
    return [int(i) - 1 for i in indices]


def nyu_load(root: Path, entry: int) -> BenchmarkSample:
    """Frame `entry` (0-based) of the labeled file: its picture and its filled depth map."""
    root = require_root(root, DESCRIBE)
    labeled = require_file(root / LABELED_NAME, _LABELED_WHAT)
    images, depths = _arrays(labeled)
    index = int(entry)
    name = f"{LABELED_NAME}#{index + 1:04d}"
    if not 0 <= index < images.shape[0]:
        raise SkippedFile("missing", f"{labeled} has no frame {index + 1}")
    try:
        image = np.asarray(images[index]).transpose(2, 1, 0)
        depth = np.asarray(depths[index], dtype=np.float32).T
    except (OSError, ValueError, RuntimeError) as exc:
        raise SkippedFile("corrupt", f"cannot read frame {index + 1} of {labeled}: {exc}") from exc
    depth, valid = measured(depth)
    return BenchmarkSample(name=name, image=np.ascontiguousarray(image), depth=depth, valid=valid)


def _frame_count(labeled: Path) -> int:
    images, _ = _arrays(labeled)
    return int(images.shape[0])


def _arrays(labeled: Path) -> tuple[Any, Any]:
    """The `images` and `depths` datasets, checked to be what MATLAB writes for NYU."""
    handle = _labeled_file(labeled)
    missing = [key for key in ("images", "depths") if key not in handle]
    if missing:
        raise BenchmarkRootError(f"{labeled} has no {' or '.join(missing)}; expected {DESCRIBE}")
    images, depths = handle["images"], handle["depths"]
    if images.ndim != 4 or images.shape[1] != 3 or images.dtype != np.uint8:
        raise BenchmarkRootError(
            f"{labeled}: `images` is {images.dtype} {images.shape}; expected uint8 "
            "(frames, 3, width, height) as MATLAB v7.3 stores NYU's images"
        )
    expected = (images.shape[0], images.shape[2], images.shape[3])
    if depths.shape != expected or not np.issubdtype(depths.dtype, np.floating):
        raise BenchmarkRootError(
            f"{labeled}: `depths` is {depths.dtype} {depths.shape}; expected float {expected} "
            "to match `images`"
        )
    return images, depths


_open_lock = threading.Lock()
_open_file: tuple[tuple[str, int, int, int, int], Any] | None = None


def _labeled_file(labeled: Path) -> Any:
    """An h5py handle on the labeled file. The last one opened stays open, so that reading the
    test frames one by one does not reopen a 2.8 GB file each time; a different file, the same
    path replaced or changed on disk, or a forked process closes it and opens its own."""
    import h5py

    global _open_file
    stat = labeled.stat()
    key = (str(labeled.resolve()), stat.st_ino, stat.st_mtime_ns, stat.st_size, os.getpid())
    with _open_lock:
        if _open_file is not None and _open_file[0] == key:
            return _open_file[1]
        if _open_file is not None:
            _open_file[1].close()
            _open_file = None
        try:
            handle = h5py.File(labeled, "r")
        except OSError as exc:
            raise BenchmarkRootError(
                f"cannot read {labeled} as MATLAB v7.3 (HDF5): {exc}; expected {_LABELED_WHAT}"
            ) from exc
        _open_file = (key, handle)
        return handle


def _test_indices(splits: Path) -> np.ndarray:
    """`testNdxs` from a MATLAB v5 file (as published) or a v7.3 (HDF5) one, as int64."""
    import h5py

    try:
        if h5py.is_hdf5(splits):
            with h5py.File(splits, "r") as handle:
                values = np.asarray(handle["testNdxs"]) if "testNdxs" in handle else None
        else:
            from scipy.io import loadmat

            values = loadmat(splits, variable_names=["testNdxs"]).get("testNdxs")
    except Exception as exc:  # h5py and scipy.io raise many types for a damaged file
        raise BenchmarkRootError(f"cannot read {splits} as a MATLAB file: {exc}") from exc
    if values is None:
        raise BenchmarkRootError(f"{splits} has no testNdxs; expected {_SPLITS_WHAT}")
    values = np.asarray(values).reshape(-1)
    if not np.issubdtype(values.dtype, np.number) or not np.all(values == np.round(values)):
        raise BenchmarkRootError(f"{splits}: testNdxs is not a list of frame numbers")
    return values.astype(np.int64)


READER = BenchmarkReader(
    name="nyu", entries=nyu_entries, load=nyu_load, describe=DESCRIBE, takes_split=True
)
