"""What a published RGB-D layout is: where its pairs are, and how one pair is read.

A layout names its files by regular expressions over paths relative to the source folder; the
groups of a match are the frame's key, so an image and a depth map pair when their keys are
equal. Files the patterns do not match are not part of the layout and are ignored; matched
files without a partner are listed as skipped, as the generic folder importer does.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depth_core.data.image_io import ImageReadError, read_image
from depth_core.data.source_files import DatasetImportError, SkippedFile, visible_files

Pair = tuple[Path, Path]
SkipEntry = dict[str, str]
PairReader = Callable[[Path, Path], tuple[np.ndarray, np.ndarray, np.ndarray]]


@dataclass(frozen=True)
class RGBDLayout:
    """One dataset's published layout and depth convention.

    `images` are the colour file patterns, preferred first (a frame may ship several colour
    files); `depth` is the depth file pattern. `read` returns (uint8 RGB `(H, W, 3)`, float32
    planar depth `(H, W)` with 0 where invalid, bool valid mask), raising SkippedFile for a
    file that cannot be used. `image_file`, `depth_file` and `convention` say the same for
    people (help texts, error messages).
    """

    name: str
    images: tuple[re.Pattern[str], ...]
    depth: re.Pattern[str]
    read: PairReader
    image_file: str
    depth_file: str
    convention: str

    def find_pairs(self, src: Path) -> tuple[list[Pair], list[SkipEntry]]:
        """Every (image, depth map) pair under `src`; files without a partner as skip entries."""
        if not src.is_dir():
            raise DatasetImportError(f"source folder {src} does not exist")
        images: dict[tuple[str, ...], tuple[int, Path]] = {}
        depths: dict[tuple[str, ...], Path] = {}
        skipped: list[SkipEntry] = []
        for path in visible_files(src, skipped):
            relative = path.relative_to(src).as_posix()
            match = self.depth.fullmatch(relative)
            if match is not None:
                depths[_key(match)] = path
                continue
            for priority, pattern in enumerate(self.images):
                match = pattern.fullmatch(relative)
                if match is not None:
                    key = _key(match)
                    if key not in images or priority < images[key][0]:
                        images[key] = (priority, path)
                    break
        if not images and not depths:
            raise DatasetImportError(
                f"no {self.name} files under {src}: expected images {self.image_file} "
                f"with depth maps {self.depth_file}"
            )
        pairs: list[Pair] = []
        for key in sorted(set(images) | set(depths)):
            image, depth = images.get(key, (0, None))[1], depths.get(key)
            if image is not None and depth is not None:
                pairs.append((image, depth))
            elif image is not None:
                reason = f"no depth map found ({self.name} pairs it with {self.depth_file})"
                skipped.append(SkippedFile("no_depth", reason).entry(_relative(image, src)))
            else:
                reason = f"depth map without an RGB image ({self.name} expects {self.image_file})"
                skipped.append(SkippedFile("no_image", reason).entry(_relative(depth, src)))
        return pairs, skipped

    def read_pair(self, image_path: Path, depth_path: Path):
        """(image, planar depth, valid mask) of one pair, by this layout's conventions."""
        return self.read(image_path, depth_path)


def _key(match: re.Match[str]) -> tuple[str, ...]:
    return tuple(group or "" for group in match.groups())


def _relative(path: Path, src: Path) -> str:
    return path.relative_to(src).as_posix()


def read_rgb(path: Path) -> np.ndarray:
    """A layout's colour picture as uint8 RGB, unrotated (it must stay aligned with depth)."""
    try:
        return read_image(path, apply_exif=False)
    except ImageReadError as exc:
        raise SkippedFile("unreadable", str(exc)) from exc


def masked_depth(depth: np.ndarray, valid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The project's convention: float32 depth, finite and positive where valid, 0 elsewhere."""
    depth = np.asarray(depth, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        valid = valid & np.isfinite(depth) & (depth > 0)
    return np.where(valid, depth, 0.0).astype(np.float32), valid
