"""Per-sample manifest (parquet) and dataset summary (JSON) of a sharded dataset directory.

The manifest lets people and tools look at a dataset without opening shards (sizes, depth
statistics, where each sample came from). `summary.json` is written last, atomically: a
dataset directory is complete exactly when it exists.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from depth_core.atomic_io import atomic_write, write_json
from depth_core.data.shards import list_shards, read_shard, shard_index, shard_keys

MANIFEST_NAME = "manifest.parquet"
SUMMARY_NAME = "summary.json"
DatasetKind = Literal["labeled", "unlabeled", "pseudo"]
_SOURCE_COLUMNS = ("source", "depth_source")


def dataset_kind(keys: Iterable[str]) -> DatasetKind:
    """Classify a dataset by the arrays its shards hold (see docs/architecture.md)."""
    keys = set(keys)
    if "depth" in keys and "image" in keys:
        return "labeled"
    if "disparity" in keys:
        return "pseudo"
    if "image" in keys:
        return "unlabeled"
    raise ValueError(
        f"shard arrays {sorted(keys)} match no dataset kind (labeled/unlabeled/pseudo)"
    )


def valid_pseudo_disparity(disparity: np.ndarray) -> np.ndarray:
    """Which teacher labels are usable: finite and non-negative. Zero is a label (a head's
    "farthest"), so pseudo-labels stay as dense as Depth Anything's."""
    return np.isfinite(disparity) & (disparity >= 0)


def _valid_statistics(values: np.ndarray, valid: np.ndarray, prefix: str) -> dict[str, np.ndarray]:
    """Min / median / max over valid pixels and the valid fraction, one entry per sample."""
    n = values.shape[0]
    flat = values.reshape(n, -1).astype(np.float32)
    ok = valid.reshape(n, -1)
    has_any = ok.any(axis=1)
    lo = np.where(has_any, np.where(ok, flat, np.inf).min(axis=1), np.nan)
    hi = np.where(has_any, np.where(ok, flat, -np.inf).max(axis=1), np.nan)
    median = np.array([np.median(row[m]) if m.any() else np.nan for row, m in zip(flat, ok)])
    return {
        f"{prefix}_min": lo.astype(np.float64),
        f"{prefix}_median": median.astype(np.float64),
        f"{prefix}_max": hi.astype(np.float64),
        "valid_fraction": ok.mean(axis=1).astype(np.float64),
    }


def shard_rows(
    index: int, arrays: Mapping[str, np.ndarray], default_source: str = ""
) -> pd.DataFrame:
    """Manifest rows for one shard's arrays."""
    ids = np.asarray(arrays["id"]).astype(str)
    n = len(ids)
    spatial = next(arrays[k] for k in ("image", "depth", "disparity") if k in arrays)
    columns: dict[str, Any] = {
        "id": ids,
        "shard": np.full(n, index, dtype=np.int64),
        "index": np.arange(n, dtype=np.int64),
        "source": np.asarray(arrays["source"]).astype(str)
        if "source" in arrays
        else [default_source] * n,
        "height": np.full(n, spatial.shape[1], dtype=np.int64),
        "width": np.full(n, spatial.shape[2], dtype=np.int64),
    }
    if "depth_source" in arrays:
        columns["depth_source"] = np.asarray(arrays["depth_source"]).astype(str)
    if "depth" in arrays:
        depth = arrays["depth"]
        valid = np.isfinite(depth) & (depth > 0)
        if "mask" in arrays:
            valid &= arrays["mask"].astype(bool)
        columns.update(_valid_statistics(depth, valid, "depth"))
    elif "disparity" in arrays:
        disparity = arrays["disparity"].astype(np.float32)
        columns.update(_valid_statistics(disparity, valid_pseudo_disparity(disparity), "disparity"))
    return pd.DataFrame(columns)


def build_manifest(
    dataset_dir: str | Path, default_source: str = "", write: bool = True
) -> pd.DataFrame:
    """Scan every shard (one at a time) into a manifest; optionally write manifest.parquet.

    `source` comes from a shard's `source` array when present, else `default_source`.
    Duplicate sample ids are an error: pseudo-labels and reports refer to samples by id.
    """
    dataset_dir = Path(dataset_dir)
    shards = list_shards(dataset_dir)
    if not shards:
        raise FileNotFoundError(f"no shards under {dataset_dir / 'shards'}")
    frames = []
    for path in shards:
        keys = shard_keys(path)
        wanted = [
            k for k in ("id", "image", "depth", "mask", "disparity", *_SOURCE_COLUMNS) if k in keys
        ]
        if "depth" in keys or "disparity" in keys:
            wanted = [k for k in wanted if k != "image"]  # statistics need no pixels
        frames.append(shard_rows(shard_index(path), read_shard(path, wanted), default_source))
    frame = pd.concat(frames, ignore_index=True)
    duplicated = frame["id"][frame["id"].duplicated()].unique()
    if len(duplicated):
        raise ValueError(f"duplicate sample ids in {dataset_dir}: {list(duplicated[:5])}")
    if write:
        write_manifest(dataset_dir, frame)
    return frame


def write_manifest(dataset_dir: str | Path, frame: pd.DataFrame) -> Path:
    """Write manifest.parquet atomically."""
    return atomic_write(Path(dataset_dir) / MANIFEST_NAME, frame.to_parquet(index=False))


def read_manifest(dataset_dir: str | Path) -> pd.DataFrame:
    """Load a dataset's manifest; a missing one is reported with its path."""
    path = Path(dataset_dir) / MANIFEST_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no manifest at {path}; build it with build_manifest()")
    return pd.read_parquet(path)


def write_summary(dataset_dir: str | Path, summary: Mapping[str, Any]) -> Path:
    """Write summary.json atomically; its presence marks the dataset complete."""
    return write_json(Path(dataset_dir) / SUMMARY_NAME, summary)


def read_summary(dataset_dir: str | Path) -> dict[str, Any]:
    path = Path(dataset_dir) / SUMMARY_NAME
    if not path.is_file():
        raise FileNotFoundError(f"no summary at {path}: the dataset is missing or incomplete")
    return json.loads(path.read_text())


def is_dataset_complete(dataset_dir: str | Path) -> bool:
    return (Path(dataset_dir) / SUMMARY_NAME).is_file()


def finalize_dataset(
    dataset_dir: str | Path,
    parameters: Mapping[str, Any] | None = None,
    skipped: Iterable[Mapping[str, str]] = (),
    extra: Mapping[str, Any] | None = None,
    default_source: str = "",
) -> dict[str, Any]:
    """Build the manifest, then write summary.json (counts, skipped files, parameters).

    Call it after all shards exist; `skipped` entries are `{"file": ..., "reason": ...}`.
    """
    dataset_dir = Path(dataset_dir)
    frame = build_manifest(dataset_dir, default_source=default_source)
    shards = list_shards(dataset_dir)
    skipped = [dict(item) for item in skipped]
    summary: dict[str, Any] = {
        "kind": dataset_kind(shard_keys(shards[0])),
        "n_samples": len(frame),
        "n_shards": len(shards),
        "shard_size": int((frame["shard"] == frame["shard"].iloc[0]).sum()),
        "height": _uniform(frame["height"]),
        "width": _uniform(frame["width"]),
        "n_skipped": len(skipped),
        "skipped": skipped,
    }
    if "valid_fraction" in frame:
        summary["mean_valid_fraction"] = round(float(frame["valid_fraction"].mean()), 6)
    summary["parameters"] = dict(parameters or {})
    summary.update(extra or {})
    write_summary(dataset_dir, summary)
    return summary


def write_dataset_metadata(
    dataset_dir: str | Path,
    params: Mapping[str, Any] | None = None,
    skipped: Iterable[Mapping[str, str]] = (),
    extra: Mapping[str, Any] | None = None,
    default_source: str = "",
) -> dict[str, Any]:
    """`finalize_dataset` under the name the pipeline stages use (`params` = parameters)."""
    return finalize_dataset(dataset_dir, params, skipped, extra, default_source)


def _uniform(column: pd.Series) -> int | None:
    values = column.unique()
    return int(values[0]) if len(values) == 1 else None
