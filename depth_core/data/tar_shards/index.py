"""The index of a tar-backed dataset: which tars, which members of each, decoded how.

A dataset directory whose images stay in WebDataset tars (a bucket, a mounted disk) holds
`webdataset.json` instead of `shards/`: the expanded url list, for each usable tar its
position in that list (the shard number pseudo-labels are keyed by) and the `__key__`s of
its members in tar order, and the decode settings (working size, EXIF, depth scale). Beside
it sit `manifest.parquet` and `summary.json` as for any dataset, so DVC versions a few
kilobytes per tar and never the pixels.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

from depth_core.atomic_io import write_json

INDEX_NAME = "webdataset.json"
INDEX_FORMAT = "webdataset"
TarKind = Literal["labeled", "unlabeled"]


class TarIndexError(ValueError):
    """An index that cannot be read, or a tar that no longer matches it; names the file."""


@dataclass(frozen=True)
class DecodeSpec:
    """How a member becomes a sample: the working size every image is fitted to (cover, then
    centre crop, as `image_io.fit_image`), EXIF rotation, and raw depth / `depth_scale`."""

    height: int
    width: int
    apply_exif: bool = True
    depth_scale: float = 1.0

    def __post_init__(self) -> None:
        if self.height <= 0 or self.width <= 0:
            raise ValueError(f"working size must be positive, got {self.height}x{self.width}")
        if self.depth_scale <= 0:
            raise ValueError(f"depth_scale must be positive, got {self.depth_scale}")


@dataclass(frozen=True)
class TarEntry:
    """One usable tar: its shard number (position in the url list), url and member keys."""

    index: int
    url: str
    keys: tuple[str, ...]


@dataclass(frozen=True)
class TarIndex:
    kind: TarKind
    urls: tuple[str, ...]
    decode: DecodeSpec
    tars: tuple[TarEntry, ...]

    @property
    def n_samples(self) -> int:
        return sum(len(tar.keys) for tar in self.tars)


def index_path(dataset_dir: str | Path) -> Path:
    return Path(dataset_dir) / INDEX_NAME


def is_tar_dataset(dataset_dir: str | Path) -> bool:
    """Whether a dataset directory reads its images from tars (it holds webdataset.json)."""
    return index_path(dataset_dir).is_file()


def write_tar_index(dataset_dir: str | Path, index: TarIndex) -> Path:
    """Write webdataset.json atomically."""
    payload = {
        "format": INDEX_FORMAT,
        "kind": index.kind,
        "decode": asdict(index.decode),
        "urls": list(index.urls),
        "tars": [
            {"index": tar.index, "url": tar.url, "keys": list(tar.keys)} for tar in index.tars
        ],
    }
    return write_json(index_path(dataset_dir), payload)


def read_tar_index(dataset_dir: str | Path) -> TarIndex:
    """Load webdataset.json; a missing or malformed one is reported with its path."""
    path = index_path(dataset_dir)
    try:
        raw = json.loads(path.read_text())
        if raw.get("format") != INDEX_FORMAT:
            raise ValueError(f"format is {raw.get('format')!r}, not {INDEX_FORMAT!r}")
        return TarIndex(
            kind=raw["kind"],
            urls=tuple(raw["urls"]),
            decode=DecodeSpec(**raw["decode"]),
            tars=tuple(
                TarEntry(int(t["index"]), str(t["url"]), tuple(t["keys"])) for t in raw["tars"]
            ),
        )
    except FileNotFoundError:
        raise TarIndexError(f"no tar index at {path}") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TarIndexError(f"cannot read tar index {path}: {exc}") from exc
