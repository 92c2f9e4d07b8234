"""Write a folder of images (or RGB-D pairs) as WebDataset tars: the files' bytes as they are.

Nothing is re-encoded or resized: a JPEG goes into the tar as the camera wrote it, so a tar
costs what the photos cost (docs/data-formats.md compares it with `.npz` shards). Each sample is
decoded once, as the `.npz` importer reads it, so a truncated file or an unusable depth map is
skipped and named instead of reaching a tar. A member is `<key>.<ext>` with the key the file's
path below the folder, without its extension and with dots made underscores (WebDataset splits a
name at its first dot); RGB-D pairs add `<key>.depth.png` (16-bit) or `<key>.depth.npy`. The
tars are written with fixed member metadata (the same folder gives the same bytes) into a hidden
folder that replaces the destination whole, only once every tar exists.
"""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from depth_core.atomic_io import atomic_path, replaced_directory
from depth_core.data.image_io import ImageReadError, read_image
from depth_core.data.importers import (
    FOLDER_FORMAT,
    DatasetImportError,
    ImageImportConfig,
    RGBDImportConfig,
    check_destination,
    read_rgbd_pair,
    scan_images,
    scan_rgbd_pairs,
)
from depth_core.data.source_files import SkippedFile, nothing_usable, skip_entry
from depth_core.data.tar_shards.decode import IMAGE_SUFFIXES

# A sample: its key and its files, each with the member suffix it gets in the tar.
Item = tuple[str, list[tuple[Path, str]]]

TAR_DEPTH_SUFFIXES = {".png": "depth.png", ".npy": "depth.npy"}


@dataclass
class TarWriteStats:
    """What a tar export wrote: samples, tars, their total bytes, the urls to put in params."""

    out_dir: str
    n_samples: int
    n_tars: int
    n_bytes: int
    urls: str
    skipped: list[dict[str, str]] = field(default_factory=list)

    @property
    def bytes_per_sample(self) -> float:
        return self.n_bytes / self.n_samples if self.n_samples else 0.0


def sample_key(relative: str) -> str:
    """`holiday/IMG.0001.JPG` -> `holiday/IMG_0001`: no dot, so WebDataset keeps it whole."""
    path = Path(relative)
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return (path.parent / stem.replace(".", "_")).as_posix().removeprefix("./")


def tar_name(prefix: str, index: int) -> str:
    return f"{prefix}-{index:06d}.tar"


def url_pattern(out_dir: Path, prefix: str, n_tars: int) -> str:
    """The brace pattern naming every tar written (what `data.*.urls` takes)."""
    if n_tars == 1:
        return str(out_dir / tar_name(prefix, 0))
    return str(out_dir / f"{prefix}-{{{0:06d}..{n_tars - 1:06d}}}.tar")


def _member(name: str, data: bytes) -> tuple[tarfile.TarInfo, io.BytesIO]:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o444, 0
    return info, io.BytesIO(data)


def _write_tar(path: Path, members: list[tuple[str, bytes]]) -> int:
    with atomic_path(path) as temp, tarfile.open(temp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in members:
            tar.addfile(*_member(name, data))
    return path.stat().st_size


def is_tar_set(folder: Path, prefix: str) -> bool:
    """Whether `folder` holds only tars this writer names `prefix-NNNNNN.tar` (so a new
    export may replace it whole)."""
    pattern = re.compile(re.escape(prefix) + r"-\d{6}\.tar")
    return all(pattern.fullmatch(entry.name) for entry in folder.iterdir())


def _write_all(
    src: Path,
    out_dir: Path,
    items: list[Item],
    check: Callable[[list[tuple[Path, str]]], None],
    shard_size: int,
    prefix: str,
    skipped: list[dict[str, str]],
    progress: bool,
) -> TarWriteStats:
    """Write every sample whose files pass `check` into tars that replace `out_dir` whole,
    only once all are written; with no usable sample, fail and leave `out_dir` as it was."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    check_destination(
        src, out_dir, lambda folder: is_tar_set(folder, prefix), f"a set of {prefix} tars"
    )
    with replaced_directory(out_dir) as folder:
        buffer: list[tuple[str, bytes]] = []
        n_samples = n_tars = n_bytes = in_buffer = 0
        samples = _read(src, items, check, skipped)
        for members in tqdm(samples, total=len(items), desc="tars", disable=not progress):
            buffer += members
            in_buffer += 1
            n_samples += 1
            if in_buffer == shard_size:
                n_bytes += _write_tar(folder / tar_name(prefix, n_tars), buffer)
                n_tars, buffer, in_buffer = n_tars + 1, [], 0
        if buffer:
            n_bytes += _write_tar(folder / tar_name(prefix, n_tars), buffer)
            n_tars += 1
        if not n_samples:
            raise nothing_usable("files for tars", src, out_dir, skipped)
    return TarWriteStats(
        str(out_dir), n_samples, n_tars, n_bytes, url_pattern(out_dir, prefix, n_tars), skipped
    )


def _unique(items: list[Item], src: Path, skipped: list[dict[str, str]]) -> list[Item]:
    """Drop a sample whose key an earlier one took (`a.jpg` and `a.png`), naming it."""
    seen: dict[str, str] = {}
    kept = []
    for key, files in items:
        name = files[0][0].relative_to(src).as_posix()
        if key in seen:
            skipped.append(skip_entry(name, "duplicate_key", f"key {key!r} taken by {seen[key]}"))
            continue
        seen[key] = name
        kept.append((key, files))
    return kept


def _read(
    src: Path,
    items: list[Item],
    check: Callable[[list[tuple[Path, str]]], None],
    skipped: list[dict[str, str]],
) -> Iterator[list[tuple[str, bytes]]]:
    """Each usable sample's tar members; a sample whose files fail `check` (or cannot be
    read) is skipped and named, as the `.npz` importer does."""
    for key, files in items:
        name = files[0][0].relative_to(src).as_posix()
        try:
            check(files)
            yield [(f"{key}.{suffix}", path.read_bytes()) for path, suffix in files]
        except SkippedFile as skip:
            skipped.append(skip.entry(name))
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - an odd file must not end the export
            skipped.append(skip_entry(name, "error", f"{type(exc).__name__}: {exc}"))


def _check_image(files: list[tuple[Path, str]]) -> None:
    """Decode the picture once, so a truncated or foreign file never reaches a tar."""
    try:
        read_image(files[0][0], apply_exif=False)
    except ImageReadError as exc:
        raise SkippedFile("unreadable", str(exc)) from exc


def write_image_tars(
    src: str | Path,
    dst: str | Path,
    shard_size: int = 1000,
    prefix: str = "images",
    progress: bool = True,
) -> TarWriteStats:
    """Every JPEG / PNG / WebP below `src` into tars of `shard_size` images under `dst`."""
    src, dst = Path(src), Path(dst)
    config = ImageImportConfig(image_extensions=[f".{s}" for s in IMAGE_SUFFIXES])
    items, skipped = [], []
    for path in sorted(scan_images(src, config, skipped)):
        relative = path.relative_to(src).as_posix()
        items.append((sample_key(relative), [(path, path.suffix.lower().lstrip("."))]))
    items = _unique(items, src, skipped)
    return _write_all(src, dst, items, _check_image, shard_size, prefix, skipped, progress)


def write_rgbd_tars(
    src: str | Path,
    dst: str | Path,
    config: RGBDImportConfig,
    shard_size: int = 1000,
    prefix: str = "rgbd",
    progress: bool = True,
) -> TarWriteStats:
    """RGB-D pairs of a folder (`format: folder`) into tars: the image, and its depth map as
    `.depth.png` or `.depth.npy` (other depth files are listed as skipped: convert them)."""
    if config.format != FOLDER_FORMAT:
        raise DatasetImportError(
            f"tars are written from --format {FOLDER_FORMAT} folders only, not {config.format!r}"
        )
    src, dst = Path(src), Path(dst)
    pairs, skipped = scan_rgbd_pairs(src, config)
    items = []
    for image, depth in sorted(pairs):
        image_suffix = image.suffix.lower().lstrip(".")
        depth_suffix = TAR_DEPTH_SUFFIXES.get(depth.suffix.lower())
        if image_suffix not in IMAGE_SUFFIXES or depth_suffix is None:
            reason = "tars hold .jpg/.png/.webp images with .png or .npy depth"
            skipped.append(skip_entry(image.relative_to(src).as_posix(), "tar_format", reason))
            continue
        key = sample_key(image.relative_to(src).as_posix())
        items.append((key, [(image, image_suffix), (depth, depth_suffix)]))
    items = _unique(items, src, skipped)

    def check_pair(files: list[tuple[Path, str]]) -> None:
        """Read the pair as the `.npz` importer would: bad depth never reaches a tar."""
        read_rgbd_pair(files[0][0], files[1][0], config)

    return _write_all(src, dst, items, check_pair, shard_size, prefix, skipped, progress)
