"""Import users' own folders (RGB-D pairs, or unlabeled images) as sharded datasets.

Imports are all-or-nothing: everything is written into a hidden folder beside `dst`
(`depth_core.atomic_io.replaced_directory`) that takes `dst`'s place only once the manifest and
summary exist, so a crash never leaves something that looks like a dataset. Individual bad
files never stop an import; they are skipped and listed with the reason (and a short code to
count them by) in summary.json and in the returned stats.
Hidden files and folders (names starting with ".") and files that are neither images nor
depth maps are ignored; folder symlinks are followed, each folder searched once (a symlink loop
is listed as skipped, not followed). RGB-D sources come as any folder paired by file name (`format:
folder`) or as a public training set in its own published layout (depth_core.data.layouts);
the format only chooses how pairs are found and read, everything after is shared.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from tqdm.auto import tqdm

from depth_core.atomic_io import replaced_directory
from depth_core.data.image_io import (
    IMAGE_EXTENSIONS,
    DepthResize,
    ImageReadError,
    fit_depth,
    fit_image,
    read_depth,
    read_image,
)
from depth_core.data.layouts import format_names, get_layout
from depth_core.data.manifest import SUMMARY_NAME, finalize_dataset
from depth_core.data.shards import shard_path, write_shard
from depth_core.data.source_files import (
    FOLDER_FORMAT,
    DatasetImportError,
    SkippedFile,
    nothing_usable,
    skip_entry,
    visible_files,
)

DEFAULT_DEPTH_SUFFIXES = (
    ".depth.npz",
    ".depth.npy",
    ".depth.png",
    ".depth.tif",
    ".depth.tiff",
    "_depth.npz",
    "_depth.npy",
    "_depth.png",
    "_depth.tif",
    "_depth.tiff",
    ".npz",
    ".npy",
)

# The generic folder's own conventions; a public set's layout fixes these itself.
FOLDER_ONLY_FIELDS = (
    "depth_scale",
    "is_disparity",
    "depth_suffixes",
    "image_dir",
    "depth_dir",
    "image_extensions",
)


def check_rgbd_format(name: str) -> str:
    """`name` if it names an RGB-D source format (`folder` or a layout's), else ValueError."""
    if name not in format_names():
        raise ValueError(f"unknown format {name!r}; expected one of {', '.join(format_names())}")
    return name


RGBDFormat = Annotated[str, AfterValidator(check_rgbd_format)]


class ImageImportConfig(BaseModel):
    """Import a folder of unlabeled images, fitted to the training resolution."""

    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(
        None, description="folder to import (stages read it; the CLI takes SRC)"
    )
    height: int = Field(128, gt=0)
    width: int = Field(128, gt=0)
    shard_size: int = Field(256, gt=0)
    image_extensions: list[str] = Field(default_factory=lambda: list(IMAGE_EXTENSIONS))
    apply_exif: bool = Field(True, description="rotate camera JPEGs upright")
    compress: bool = False


class RGBDImportConfig(BaseModel):
    """Import RGB images paired with depth (or disparity) maps.

    With `format: folder`, pairs are found by file name: depth = raw value / `depth_scale`
    (16-bit PNG: NYU 1000, TUM 5000, KITTI 256); with `is_disparity` that value is a disparity
    and depth = 1 / value. A depth map pairs with the image whose path (relative to
    `image_dir`) minus its extension, plus one of `depth_suffixes`, is its path relative to
    `depth_dir`; earlier suffixes win. Any other format is a public set's own layout, which
    fixes those conventions (FOLDER_ONLY_FIELDS must keep their defaults).
    """

    model_config = ConfigDict(extra="forbid")

    path: str | None = Field(
        None, description="folder to import (stages read it; the CLI takes SRC)"
    )
    format: RGBDFormat = Field(
        FOLDER_FORMAT,
        description="folder (pairs by file name) or a public set's layout: hypersim, vkitti2, "
        "tartanair, blendedmvs",
    )
    height: int = Field(128, gt=0)
    width: int = Field(128, gt=0)
    depth_scale: float = Field(1.0, gt=0)
    is_disparity: bool = False
    min_depth: float = Field(0.0, ge=0.0, description="depth <= this is invalid")
    max_depth: float | None = Field(None, gt=0.0, description="depth > this is invalid")
    shard_size: int = Field(256, gt=0)
    depth_suffixes: list[str] = Field(
        default_factory=lambda: list(DEFAULT_DEPTH_SUFFIXES), min_length=1
    )
    image_extensions: list[str] = Field(default_factory=lambda: list(IMAGE_EXTENSIONS))
    image_dir: str = Field("", description="sub-folder of the source holding the images")
    depth_dir: str = Field("", description="sub-folder holding depth maps ('' = beside the images)")
    depth_resize: DepthResize = Field(
        "mean",
        description="mean keeps sparse (LiDAR) depth alive when downscaling; nearest keeps raw values",
    )
    min_valid_fraction: float = Field(
        0.0, ge=0.0, lt=1.0, description="after resizing; all-invalid is always skipped"
    )
    compress: bool = False

    @model_validator(mode="after")
    def _check(self) -> RGBDImportConfig:
        if self.max_depth is not None and self.max_depth <= self.min_depth:
            raise ValueError(
                f"max_depth ({self.max_depth}) must exceed min_depth ({self.min_depth})"
            )
        check_folder_only_fields(self, self.format)
        if self.image_dir == self.depth_dir:
            extensions = {e.lower() for e in self.image_extensions}
            ambiguous = [s for s in self.depth_suffixes if s.lower() in extensions or not s]
            if ambiguous:
                raise ValueError(
                    f"depth_suffixes {ambiguous} cannot tell depth maps from images in the same "
                    "folder; use a marked suffix (e.g. '_depth.png') or set depth_dir"
                )
        return self


def check_folder_only_fields(config: RGBDImportConfig, format: str, prefix: str = "") -> None:
    """Refuse the generic folder's knobs with another format, naming them (`prefix` + key):
    a layout fixes its own files and depth convention, and a setting must not be ignored."""
    if format == FOLDER_FORMAT:
        return
    changed = [
        name
        for name in FOLDER_ONLY_FIELDS
        if getattr(config, name)
        != type(config).model_fields[name].get_default(call_default_factory=True)
    ]
    if changed:
        keys = ", ".join(prefix + name for name in changed)
        raise ValueError(
            f"{keys}: only for format {FOLDER_FORMAT!r}; the {format} layout fixes its own file "
            "names and depth convention, so leave the default"
        )


@dataclass
class ImportStats:
    """Outcome of an import, for the CLI and the stage's metrics (`stats.x` or `stats["x"]`)."""

    dataset_dir: str
    n_samples: int
    n_shards: int
    n_skipped: int
    skipped_by_code: dict[str, int]
    skipped: list[dict[str, str]] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        if key not in self.__dataclass_fields__:
            raise KeyError(key)
        return getattr(self, key)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class _ShardWriter:
    """Accumulate samples and write a shard every `shard_size` of them."""

    def __init__(self, dataset_dir: Path, shard_size: int, compress: bool) -> None:
        self.dataset_dir, self.shard_size, self.compress = dataset_dir, shard_size, compress
        self.buffer: list[dict[str, np.ndarray]] = []
        self.num_shards = 0
        self.num_samples = 0

    def add(self, sample: dict[str, Any]) -> None:
        self.buffer.append(sample)
        self.num_samples += 1
        if len(self.buffer) == self.shard_size:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        arrays = {
            key: np.stack([np.asarray(s[key]) for s in self.buffer]) for key in self.buffer[0]
        }
        write_shard(shard_path(self.dataset_dir, self.num_shards), arrays, compress=self.compress)
        self.num_shards += 1
        self.buffer = []


# ---------------------------------------------------------------------------- scanning


def _match_suffix(relative: str, suffixes: list[str]) -> tuple[int, str] | None:
    lowered = relative.lower()
    for priority, suffix in enumerate(suffixes):
        if suffix and lowered.endswith(suffix.lower()) and len(relative) > len(suffix):
            return priority, relative[: -len(suffix)]
    return None


def scan_rgbd_pairs(
    src: Path, config: RGBDImportConfig
) -> tuple[list[tuple[Path, Path]], list[dict[str, str]]]:
    """Pair images with depth maps (by name, or by `config.format`'s layout); unpaired or
    ambiguous files become skip entries."""
    if config.format != FOLDER_FORMAT:
        return get_layout(config.format).find_pairs(src)
    image_root = src / config.image_dir
    depth_root = src / config.depth_dir
    for root in (image_root, depth_root):
        if not root.is_dir():
            raise DatasetImportError(f"source folder {root} does not exist")
    skipped: list[dict[str, str]] = []
    depth_by_key: dict[str, list[tuple[int, Path]]] = {}
    depth_files: set[Path] = set()
    for path in visible_files(depth_root, skipped, base=src):
        match = _match_suffix(path.relative_to(depth_root).as_posix(), config.depth_suffixes)
        if match is not None:
            depth_by_key.setdefault(match[1], []).append((match[0], path))
            depth_files.add(path)
    extensions = {e.lower() for e in config.image_extensions}
    images_by_key: dict[str, list[Path]] = {}
    # one search of a shared folder reports its symlink loops once
    image_skips = [] if image_root.resolve() == depth_root.resolve() else skipped
    for path in visible_files(image_root, image_skips, base=src):
        if path in depth_files or path.suffix.lower() not in extensions:
            continue
        relative = path.relative_to(image_root).as_posix()
        images_by_key.setdefault(relative[: -len(path.suffix)], []).append(path)

    pairs: list[tuple[Path, Path]] = []
    rel = lambda p: p.relative_to(src).as_posix()
    for key in sorted(set(images_by_key) | set(depth_by_key)):
        images = images_by_key.get(key, [])
        depths = sorted(depth_by_key.get(key, []))
        if len(images) > 1:
            names = ", ".join(rel(p) for p in images)
            for image in images:
                skipped.append(
                    skip_entry(
                        rel(image), "ambiguous", f"several images share the name {key!r}: {names}"
                    )
                )
        elif images and not depths:
            looked = ", ".join(key + s for s in config.depth_suffixes[:4])
            skipped.append(
                skip_entry(
                    rel(images[0]), "no_depth", f"no depth map found (looked for {looked}, ...)"
                )
            )
        elif depths and not images:
            for _, depth in depths:
                skipped.append(skip_entry(rel(depth), "no_image", "depth map without an RGB image"))
        else:
            pairs.append((images[0], depths[0][1]))
    return pairs, skipped


def scan_images(
    src: Path, config: ImageImportConfig, skipped: list[dict[str, str]] | None = None
) -> list[Path]:
    """The images under `src`; folders not searched (symlink loops...) go to `skipped`."""
    if not src.is_dir():
        raise DatasetImportError(f"source folder {src} does not exist")
    extensions = {e.lower() for e in config.image_extensions}
    return [p for p in visible_files(src, skipped) if p.suffix.lower() in extensions]


# ---------------------------------------------------------------------------- loading


def read_rgbd_pair(
    image_path: Path, depth_path: Path, config: RGBDImportConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One usable RGB-D pair at its original resolution: (image, depth, mask).

    Depth follows `config`'s conventions (the format's layout, or the folder's scale and
    disparity; then the valid range). Raises SkippedFile with code `unreadable`,
    `size_mismatch` or `no_valid_depth` (or a layout's own code) for a pair that cannot be used.
    """
    if config.format == FOLDER_FORMAT:
        try:
            image = read_image(image_path, apply_exif=False)
            depth, mask = read_depth(
                depth_path,
                scale=config.depth_scale,
                is_disparity=config.is_disparity,
                min_depth=config.min_depth,
                max_depth=config.max_depth,
            )
        except ImageReadError as exc:
            raise SkippedFile("unreadable", str(exc)) from exc
    else:
        image, depth, mask = get_layout(config.format).read_pair(image_path, depth_path)
        depth, mask = _within_range(depth, mask, config.min_depth, config.max_depth)
    if image.shape[:2] != depth.shape:
        raise SkippedFile(
            "size_mismatch",
            f"image is {image.shape[1]}x{image.shape[0]} but depth map {depth_path.name} is "
            f"{depth.shape[1]}x{depth.shape[0]}",
        )
    if not mask.any():
        raise SkippedFile(
            "no_valid_depth", "no valid depth pixel (all 0, NaN, inf or out of range)"
        )
    return image, depth, mask


def _within_range(
    depth: np.ndarray, mask: np.ndarray, min_depth: float, max_depth: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """A layout's depth limited to `(min_depth, max_depth]`, as read_depth limits a folder's."""
    mask = mask & (depth > min_depth)
    if max_depth is not None:
        mask &= depth <= max_depth
    return np.where(mask, depth, 0.0).astype(np.float32), mask


def _load_pair(
    image_path: Path, depth_path: Path, config: RGBDImportConfig
) -> dict[str, np.ndarray]:
    """A usable pair fitted to the dataset's resolution, with enough valid depth left."""
    image, depth, mask = read_rgbd_pair(image_path, depth_path, config)
    image = fit_image(image, config.height, config.width)
    depth, mask = fit_depth(depth, mask, config.height, config.width, method=config.depth_resize)
    fraction = float(mask.mean())
    if fraction == 0.0 or fraction < config.min_valid_fraction:
        raise SkippedFile(
            "low_valid_fraction",
            f"valid depth fraction after resizing is {fraction:.4f} (minimum {config.min_valid_fraction})",
        )
    return {"image": image, "depth": depth, "mask": mask}


# ---------------------------------------------------------------------------- publishing


def is_dataset_folder(folder: Path) -> bool:
    """Whether `folder` is a complete dataset (so an import may replace it)."""
    return (folder / SUMMARY_NAME).is_file()


def check_destination(
    src: Path,
    dst: Path,
    replaceable: Callable[[Path], bool] = is_dataset_folder,
    what: str = "a dataset",
) -> None:
    """Refuse, before anything is written, a `dst` inside `src` (or holding it), and a
    non-empty folder `replaceable` does not recognise as an earlier import's output."""
    src_abs, dst_abs = src.resolve(), dst.resolve()
    if dst_abs == src_abs or src_abs in dst_abs.parents or dst_abs in src_abs.parents:
        raise DatasetImportError(
            f"destination {dst} must be outside the source folder {src} (and not contain it)"
        )
    if dst.exists():
        if not dst.is_dir():
            raise DatasetImportError(f"destination {dst} exists and is not a directory")
        if any(dst.iterdir()) and not replaceable(dst):
            raise DatasetImportError(
                f"destination {dst} is a non-empty folder that is not {what}; refusing to replace it"
            )


def _build_dataset(
    folder: Path,
    src: Path,
    dst: Path,
    items: list[Any],
    load: Callable[[Any], dict[str, Any]],
    shard_size: int,
    compress: bool,
    parameters: dict[str, Any],
    skipped: list[dict[str, str]],
    progress: bool,
    what: str,
) -> ImportStats:
    """Write `dst`'s complete dataset (shards, manifest, summary) into the empty `folder`."""
    writer = _ShardWriter(folder, shard_size, compress)
    for item in tqdm(items, desc=f"import {dst.name}", unit="file", disable=not progress):
        name = (item[0] if isinstance(item, tuple) else item).relative_to(src).as_posix()
        try:
            sample = load(item)
        except SkippedFile as skip:
            skipped.append(skip.entry(name))
            continue
        except MemoryError:
            raise
        except Exception as exc:  # noqa: BLE001 - an odd file must not end the import
            skipped.append(skip_entry(name, "error", f"{type(exc).__name__}: {exc}"))
            continue
        writer.add(sample)  # write errors (disk full...) do end the import, leaving nothing
    writer.flush()
    if writer.num_samples == 0:
        raise nothing_usable(what, src, dst, skipped)
    codes = dict(sorted(Counter(s["code"] for s in skipped).items()))
    finalize_dataset(
        folder,
        parameters=parameters,
        skipped=skipped,
        extra={"source_dir": str(src), "skipped_by_code": codes},
    )
    return ImportStats(
        dataset_dir=str(dst),
        n_samples=writer.num_samples,
        n_shards=writer.num_shards,
        n_skipped=len(skipped),
        skipped_by_code=codes,
        skipped=skipped,
    )


def _import_all(jobs: list[dict[str, Any]]) -> list[ImportStats]:
    """Build every destination's dataset, then swap them all into place; on error, none."""
    with ExitStack() as swaps:
        folders = [swaps.enter_context(replaced_directory(job["dst"])) for job in jobs]
        return [_build_dataset(folder, **job) for folder, job in zip(folders, jobs)]


def _resolve(src: Any, config: Any, model: type[BaseModel]) -> tuple[Path, Any]:
    """Accept `(folder, config)` or a config whose `path` names the folder."""
    if isinstance(src, model):
        if src.path is None:
            raise DatasetImportError(f"{model.__name__}.path must name the folder to import")
        return Path(src.path), src
    return Path(src), config if config is not None else model()


def _rgbd_loader(
    src: Path, config: RGBDImportConfig
) -> Callable[[tuple[Path, Path]], dict[str, Any]]:
    def load(pair: tuple[Path, Path]) -> dict[str, Any]:
        image_path, depth_path = pair
        sample = _load_pair(image_path, depth_path, config)
        source = image_path.relative_to(src).as_posix()
        depth_source = depth_path.relative_to(src).as_posix()
        return {"id": source, **sample, "source": source, "depth_source": depth_source}

    return load


def import_rgbd_folder(
    src: str | Path | RGBDImportConfig,
    dst: str | Path,
    config: RGBDImportConfig | None = None,
    progress: bool = True,
) -> ImportStats:
    """Import a folder of RGB images with depth maps into a labeled dataset at `dst`.

    `src` is the folder, or a config whose `path` names it.
    """
    src, config = _resolve(src, config, RGBDImportConfig)
    dst = Path(dst)
    check_destination(src, dst)
    pairs, skipped = scan_rgbd_pairs(src, config)
    job = {
        "src": src,
        "dst": dst,
        "items": pairs,
        "load": _rgbd_loader(src, config),
        "shard_size": config.shard_size,
        "compress": config.compress,
        "parameters": config.model_dump(mode="json"),
        "skipped": skipped,
        "progress": progress,
        "what": "RGB-D pairs",
    }
    return _import_all([job])[0]


def split_score(seed: int, sample_id: str) -> float:
    """A stable pseudo-random number in [0, 1) per (seed, id): adding files moves no others."""
    digest = hashlib.sha256(f"{seed}:{sample_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def import_rgbd_folder_split(
    src: str | Path | RGBDImportConfig,
    train_dst: str | Path,
    val_dst: str | Path,
    val_fraction: float,
    seed: int = 0,
    config: RGBDImportConfig | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Import one RGB-D folder as a training and a validation dataset (both or neither).

    The `val_fraction` of pairs with the lowest `split_score(seed, id)` go to validation (at
    least one, and at least one stays for training). Unpaired files are listed in the
    training set's summary. Returns counts (`n_train`, `n_val`, `n_skipped`, ...) and the two
    sets' `ImportStats`.
    """
    if not 0.0 < val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
    src, config = _resolve(src, config, RGBDImportConfig)
    train_dst, val_dst = Path(train_dst), Path(val_dst)
    if train_dst.resolve() == val_dst.resolve():
        raise DatasetImportError(f"training and validation destinations are the same: {train_dst}")
    for dst in (train_dst, val_dst):
        check_destination(src, dst)
    pairs, skipped = scan_rgbd_pairs(src, config)
    if len(pairs) < 2:
        raise DatasetImportError(
            f"need at least 2 RGB-D pairs in {src} to split, found {len(pairs)}"
        )
    ranked = sorted(pairs, key=lambda pair: split_score(seed, pair[0].relative_to(src).as_posix()))
    n_val = min(len(pairs) - 1, max(1, round(len(pairs) * val_fraction)))
    val_pairs, train_pairs = sorted(ranked[:n_val]), sorted(ranked[n_val:])
    parameters = {
        **config.model_dump(mode="json"),
        "val_fraction": val_fraction,
        "split_seed": seed,
    }
    common = {
        "src": src,
        "load": _rgbd_loader(src, config),
        "shard_size": config.shard_size,
        "compress": config.compress,
        "parameters": parameters,
        "progress": progress,
        "what": "RGB-D pairs",
    }
    train, val = _import_all(
        [
            {**common, "dst": train_dst, "items": train_pairs, "skipped": skipped},
            {**common, "dst": val_dst, "items": val_pairs, "skipped": []},
        ]
    )
    return {
        "n_train": train.n_samples,
        "n_val": val.n_samples,
        "n_skipped": train.n_skipped + val.n_skipped,
        "skipped_by_code": dict(Counter(train.skipped_by_code) + Counter(val.skipped_by_code)),
        "train": train,
        "val": val,
    }


def import_image_folder(
    src: str | Path | ImageImportConfig,
    dst: str | Path,
    config: ImageImportConfig | None = None,
    progress: bool = True,
) -> ImportStats:
    """Import a folder of images (recursively) into an unlabeled dataset at `dst`.

    `src` is the folder, or a config whose `path` names it.
    """
    src, config = _resolve(src, config, ImageImportConfig)
    dst = Path(dst)
    check_destination(src, dst)

    skipped: list[dict[str, str]] = []

    def load(path: Path) -> dict[str, Any]:
        try:
            image = read_image(path, apply_exif=config.apply_exif)
        except ImageReadError as exc:
            raise SkippedFile("unreadable", str(exc)) from exc
        source = path.relative_to(src).as_posix()
        return {
            "id": source,
            "image": fit_image(image, config.height, config.width),
            "source": source,
        }

    job = {
        "src": src,
        "dst": dst,
        "items": scan_images(src, config, skipped),
        "load": load,
        "shard_size": config.shard_size,
        "compress": config.compress,
        "parameters": config.model_dump(mode="json"),
        "skipped": skipped,
        "progress": progress,
        "what": "images",
    }
    return _import_all([job])[0]
