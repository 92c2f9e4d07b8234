"""Contact sheets: a PNG grid that lets a person see what a dataset holds.

Each cell shows a sample's image next to its colourised depth (labeled sets) or pseudo
disparity (pseudo-label sets; images come from the unlabeled set they label, when given),
with the sample id on top. Samples are spread evenly over the whole dataset. A tar-backed
set (`tar_shards.index`) shows its images as training decodes them, reading only the tars
the picked samples are in.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from depth_core.atomic_io import atomic_path
from depth_core.data.manifest import dataset_kind, read_summary
from depth_core.data.shards import list_shards, read_shard, shard_index, shard_keys
from depth_core.data.tar_shards.index import TarIndex, is_tar_dataset, read_tar_index
from depth_core.data.tar_shards.reader import read_tar
from depth_core.viz import colorize_depth, colorize_disparity

_BACKGROUND = (24, 24, 24)
_GAP = 4
_LABEL_HEIGHT = 12
_MIN_TILE_HEIGHT = 96


def _pick(counts: list[int], n: int) -> dict[int, list[int]]:
    """Evenly spaced sample positions, grouped as {shard position: [indices in shard]}."""
    total = sum(counts)
    wanted = np.unique(np.linspace(0, total - 1, num=min(n, total)).round().astype(np.int64))
    offsets = np.cumsum([0] + counts)
    picks: dict[int, list[int]] = {}
    for flat in wanted:
        shard = int(np.searchsorted(offsets, flat, side="right") - 1)
        picks.setdefault(shard, []).append(int(flat - offsets[shard]))
    return picks


def _panels(kind: str, arrays: dict[str, np.ndarray], i: int) -> list[np.ndarray]:
    panels = []
    if "image" in arrays:
        panels.append(arrays["image"][i])
    if kind == "labeled":
        mask = arrays["mask"][i] if "mask" in arrays else None
        panels.append(colorize_depth(arrays["depth"][i], mask))
    elif kind == "pseudo":
        disparity = arrays["disparity"][i].astype(np.float32)
        panels.append(colorize_disparity(disparity, np.isfinite(disparity) & (disparity > 0)))
    return panels


def _tar_cells(dataset_dir: Path, n: int) -> list[tuple[str, list[np.ndarray]]]:
    index = read_tar_index(dataset_dir)
    cells = []
    for position, indices in _pick([len(tar.keys) for tar in index.tars], n).items():
        arrays = read_tar(index.tars[position], index.kind, index.decode)
        cells += [(str(arrays["id"][i]), _panels(index.kind, arrays, i)) for i in indices]
    return cells


def _tar_images(index: TarIndex, number: int, images_dir: Path, for_dir: Path) -> np.ndarray:
    """The images of tar `number` of a tar-backed set, for the pseudo shard of that number."""
    tar = next((t for t in index.tars if t.index == number), None)
    if tar is None:
        raise FileNotFoundError(f"{images_dir} indexes no tar {number} for {for_dir}")
    return read_tar(tar, index.kind, index.decode, with_depth=False)["image"]


def _cells(
    dataset_dir: Path, n: int, images_dir: Path | None
) -> list[tuple[str, list[np.ndarray]]]:
    if is_tar_dataset(dataset_dir):
        return _tar_cells(dataset_dir, n)
    shards = list_shards(dataset_dir)
    if not shards:
        raise FileNotFoundError(f"dataset {dataset_dir} has no shards")
    kind = dataset_kind(shard_keys(shards[0]))
    if kind == "pseudo" and images_dir is None:
        images_dir = _recorded_images_dir(dataset_dir)
    tar_images = None
    if images_dir is not None and is_tar_dataset(images_dir):
        tar_images, image_shards = read_tar_index(images_dir), None
    else:
        image_shards = list_shards(images_dir) if images_dir is not None else None
    counts = [len(read_shard(p, ["id"])["id"]) for p in shards]
    cells = []
    for position, indices in _pick(counts, n).items():
        if kind == "pseudo":
            arrays = read_shard(shards[position], ["id", "disparity"])
            if tar_images is not None:
                number = shard_index(shards[position])
                arrays["image"] = _tar_images(tar_images, number, images_dir, dataset_dir)
            elif image_shards is not None:
                if (
                    position >= len(image_shards)
                    or image_shards[position].name != shards[position].name
                ):
                    raise FileNotFoundError(
                        f"{images_dir} has no shard {shards[position].name} for {dataset_dir}"
                    )
                arrays["image"] = read_shard(image_shards[position], ["image"])["image"]
        else:
            keys = ["id", "image"] + (["depth", "mask"] if kind == "labeled" else [])
            arrays = read_shard(
                shards[position], [k for k in keys if k in shard_keys(shards[position])]
            )
        cells += [(str(arrays["id"][i]), _panels(kind, arrays, i)) for i in indices]
    return cells


def _recorded_images_dir(dataset_dir: Path) -> Path | None:
    """The unlabeled set a pseudo-label set records in its summary, if it is still there."""
    try:
        recorded = read_summary(dataset_dir).get("parameters", {}).get("unlabeled_dir")
    except (FileNotFoundError, ValueError):
        return None
    if recorded and (list_shards(recorded) or is_tar_dataset(recorded)):
        return Path(recorded)
    return None


def contact_sheet(
    dataset_dir: str | Path,
    out_png: str | Path,
    n: int = 16,
    columns: int = 4,
    images_dir: str | Path | None = None,
) -> Path:
    """Write a grid of up to `n` samples to `out_png` (written atomically); returns its path.

    `images_dir` is the unlabeled set a pseudo-label set belongs to (default: the
    `unlabeled_dir` its summary.json records, when it exists); without one a pseudo sheet
    shows the disparity alone.
    """
    if n < 1 or columns < 1:
        raise ValueError(f"n and columns must be >= 1, got n={n}, columns={columns}")
    dataset_dir = Path(dataset_dir)
    cells = _cells(dataset_dir, n, Path(images_dir) if images_dir is not None else None)
    height, width = cells[0][1][0].shape[:2]
    zoom = max(1, math.ceil(_MIN_TILE_HEIGHT / height))
    panel_w, panel_h = width * zoom, height * zoom
    panels_per_cell = max(len(panels) for _, panels in cells)
    cell_w = panels_per_cell * panel_w + (panels_per_cell - 1) * _GAP
    cell_h = panel_h + _LABEL_HEIGHT
    columns = min(columns, len(cells))
    rows = math.ceil(len(cells) / columns)
    sheet = Image.new(
        "RGB",
        (columns * cell_w + (columns + 1) * _GAP, rows * cell_h + (rows + 1) * _GAP),
        _BACKGROUND,
    )
    draw = ImageDraw.Draw(sheet)
    for k, (sample_id, panels) in enumerate(cells):
        x0 = _GAP + (k % columns) * (cell_w + _GAP)
        y0 = _GAP + (k // columns) * (cell_h + _GAP)
        draw.text((x0, y0), sample_id[-(cell_w // 6) :], fill=(230, 230, 230))
        for j, panel in enumerate(panels):
            tile = Image.fromarray(np.ascontiguousarray(panel)).resize(
                (panel_w, panel_h), Image.Resampling.NEAREST
            )
            sheet.paste(tile, (x0 + j * (panel_w + _GAP), y0 + _LABEL_HEIGHT))
    out_png = Path(out_png)
    with atomic_path(out_png) as temp:
        sheet.save(temp, format="PNG")
    return out_png
