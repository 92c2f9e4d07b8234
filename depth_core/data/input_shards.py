"""The shards of an image dataset, as work units: what pseudo-labelling splits across ranks.

A dataset's shards are numbered; shard `k` of the images is labelled into shard `k` of the
pseudo-labels, whole, by one rank. Each unit reads its ids and images only when it runs, so a
rank holds one shard in memory whatever the dataset's size.

A tar-backed dataset (`tar_shards.index`) has one unit per indexed tar, numbered by the tar's
position in the url list: `read` gives the tar's `__key__`s and its images decoded and fitted
to the dataset's working size (uint8 (N, H, W, 3), one size for the whole set) by
`tar_shards.decode`, the decode the students' `PseudoLabelDataset` applies to the same tar,
so every label lines up with its image pixel for pixel.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np

from depth_core.data.shards import list_shards, read_shard, shard_index
from depth_core.data.tar_shards.index import TarEntry, TarIndex, is_tar_dataset, read_tar_index
from depth_core.data.tar_shards.reader import read_tar


@dataclass(frozen=True)
class InputShard:
    """Shard `index` of a dataset: `source` names it in errors, `read` gives (ids, images),
    `read_ids` only the ids (cheap: what checking a finished labelling reads)."""

    index: int
    source: str
    read: Callable[[], tuple[np.ndarray, np.ndarray]]
    read_ids: Callable[[], np.ndarray]


def _npz_reader(path: Path) -> Callable[[], tuple[np.ndarray, np.ndarray]]:
    def read() -> tuple[np.ndarray, np.ndarray]:
        arrays = read_shard(path, ["id", "image"])
        return arrays["id"], arrays["image"]

    return read


def _npz_ids(path: Path) -> Callable[[], np.ndarray]:
    return lambda: read_shard(path, ["id"])["id"]


def _read_tar_images(index: TarIndex, tar: TarEntry) -> tuple[np.ndarray, np.ndarray]:
    arrays = read_tar(tar, index.kind, index.decode, with_depth=False)
    return arrays["id"], arrays["image"]


def _tar_ids(tar: TarEntry) -> np.ndarray:
    return np.asarray(tar.keys, dtype=str)


def input_shards(dataset_dir: str | Path) -> list[InputShard]:
    """Every shard (or indexed tar) of the dataset at `dataset_dir`, in index order."""
    if is_tar_dataset(dataset_dir):
        index = read_tar_index(dataset_dir)
        return [
            InputShard(
                tar.index, tar.url, partial(_read_tar_images, index, tar), partial(_tar_ids, tar)
            )
            for tar in index.tars
        ]
    return [
        InputShard(shard_index(path), str(path), _npz_reader(path), _npz_ids(path))
        for path in list_shards(dataset_dir)
    ]
