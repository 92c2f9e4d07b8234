"""Index WebDataset tars into a dataset directory: what a data stage stores for tars.

Every tar is read once and every member decoded as training will decode it
(`tar_shards.decode`), so what the index lists is known to load. A member that is not a
usable sample (not an image, broken depth, a repeated key) is skipped and named
`url#key`; a tar that cannot be read to its end (truncated, missing, a failing `pipe:`) is
skipped whole and named by its url: a reader would fail on it every epoch. Both are counted
in `summary.json`, and neither stops the run.

The directory then holds `webdataset.json` (`tar_shards.index`), `manifest.parquet` (one
row per sample: id = `__key__`, shard = the tar's position in the url list, source = its
url, the working and original size, encoded bytes, depth statistics) and `summary.json`,
written last, which marks the dataset complete. The pixels stay in the tars.
"""

from __future__ import annotations

import multiprocessing
import tarfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm
from webdataset.shardlists import expand_urls as expand_one

from depth_core.data.importers import split_score
from depth_core.data.manifest import SUMMARY_NAME, shard_rows, write_manifest, write_summary
from depth_core.data.tar_shards.decode import MemberError, decode_sample
from depth_core.data.tar_shards.index import (
    DecodeSpec,
    TarEntry,
    TarIndex,
    TarIndexError,
    TarKind,
    write_tar_index,
)
from depth_core.data.tar_shards.reader import iter_tar_samples

STORAGE = "webdataset"
# What reading a tar to its end can raise: a cut (tarfile.ReadError), a missing file or failed
# pipe: command (OSError), a member name given twice (ValueError from group_by_keys).
TAR_ERRORS = (OSError, tarfile.TarError, ValueError, EOFError)


def expand_urls(urls: str | Sequence[str]) -> list[str]:
    """Brace patterns (`/data/photos-{000000..000099}.tar`), `::`-joined lists and lists of
    either, expanded in order."""
    patterns = [urls] if isinstance(urls, str) else list(urls)
    expanded = [url for pattern in patterns for url in expand_one(pattern)]
    if not expanded:
        raise ValueError(f"urls {urls!r} expand to no tar")
    return expanded


@dataclass
class TarScan:
    """One tar read through: its usable samples' manifest rows and what was skipped."""

    index: int
    url: str
    rows: pd.DataFrame | None
    skipped: list[dict[str, str]] = field(default_factory=list)


@dataclass
class ScanResult:
    kind: TarKind
    urls: list[str]
    spec: DecodeSpec
    tars: list[TarScan]

    @property
    def skipped(self) -> list[dict[str, str]]:
        return [item for tar in self.tars for item in tar.skipped]

    @property
    def n_tars_skipped(self) -> int:
        return sum(tar.rows is None for tar in self.tars)


def scan_tar(index: int, url: str, kind: TarKind, spec: DecodeSpec) -> TarScan:
    """Decode every member of one tar; rows for the usable ones, a reason for the others."""
    samples: list[tuple[str, dict[str, Any]]] = []
    skipped: list[dict[str, str]] = []
    seen: set[str] = set()
    try:
        for sample in iter_tar_samples(url):
            key = sample["__key__"]
            try:
                if key in seen:
                    raise MemberError("repeated key within the tar")
                samples.append((key, decode_sample(sample, kind, spec)))
                seen.add(key)
            except MemberError as exc:
                skipped.append({"file": f"{url}#{key}", "reason": str(exc)})
    except TAR_ERRORS as exc:  # truncated, missing or unreadable: the whole tar is skipped
        reason = f"unreadable tar, skipped whole ({type(exc).__name__}: {exc})"
        return TarScan(index, url, None, [{"file": url, "reason": reason}])
    return TarScan(index, url, _rows(index, url, samples, kind), skipped)


def _rows(
    index: int, url: str, samples: list[tuple[str, dict[str, Any]]], kind: TarKind
) -> pd.DataFrame:
    arrays: dict[str, np.ndarray] = {"id": np.asarray([key for key, _ in samples], dtype=str)}
    if samples:
        arrays["image"] = np.stack([s["image"] for _, s in samples])
        if kind == "labeled":
            arrays["depth"] = np.stack([s["depth"] for _, s in samples])
            arrays["mask"] = np.stack([s["mask"] for _, s in samples])
    else:
        arrays["image"] = np.zeros((0, 1, 1, 3), np.uint8)
    frame = shard_rows(index, arrays, default_source=url)
    for column in ("orig_height", "orig_width", "bytes"):
        frame[column] = np.asarray([s[column] for _, s in samples], dtype=np.int64)
    return frame


def _scan_job(job: tuple) -> TarScan:
    return scan_tar(*job)


def scan_tars(
    urls: str | Sequence[str],
    kind: TarKind,
    spec: DecodeSpec,
    workers: int = 1,
    progress: bool = True,
    desc: str = "index tars",
) -> ScanResult:
    """Read every tar of `urls` (with `workers` processes, one tar each), in url order.

    A key already taken by an earlier tar is skipped in the later one (sample ids are keys).
    """
    expanded = expand_urls(urls)
    jobs = [(i, url, kind, spec) for i, url in enumerate(expanded)]
    bar = tqdm(total=len(jobs), desc=desc, unit="tar", disable=not progress)
    try:
        if workers <= 1 or len(jobs) < 2:
            scans = []
            for job in jobs:
                scans.append(_scan_job(job))
                bar.update()
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
                scans = []
                for scan in pool.map(_scan_job, jobs):
                    scans.append(scan)
                    bar.update()
    finally:
        bar.close()
    _drop_repeated_keys(scans)
    return ScanResult(kind, expanded, spec, scans)


def _drop_repeated_keys(scans: list[TarScan]) -> None:
    owner: dict[str, str] = {}
    for scan in scans:
        if scan.rows is None:
            continue
        repeated = scan.rows["id"].isin(owner).to_numpy()
        for key in scan.rows["id"][repeated]:
            scan.skipped.append(
                {"file": f"{scan.url}#{key}", "reason": f"key already used in {owner[key]}"}
            )
        scan.rows = scan.rows[~repeated].reset_index(drop=True)
        owner.update(dict.fromkeys(scan.rows["id"], scan.url))


def validation_keys(result: ScanResult, val_fraction: float, seed: int) -> set[str]:
    """The `val_fraction` of keys with the lowest `split_score(seed, key)` (at least one, and
    one left for training), as the folder importer splits pairs."""
    keys = [k for scan in result.tars if scan.rows is not None for k in scan.rows["id"]]
    if len(keys) < 2:
        raise TarIndexError(f"need at least 2 usable samples to split, found {len(keys)}")
    n_val = min(len(keys) - 1, max(1, round(len(keys) * val_fraction)))
    return set(sorted(keys, key=lambda key: split_score(seed, key))[:n_val])


def write_tar_dataset(
    out_dir: str | Path,
    result: ScanResult,
    keep: Callable[[str], bool] | None = None,
    parameters: Mapping[str, Any] | None = None,
    skipped: Iterable[Mapping[str, str]] | None = None,
) -> dict[str, Any]:
    """Write the index, manifest and (last) summary.json of the samples `keep` accepts.

    `skipped` defaults to everything the scan skipped; a split's second half passes [] so
    each skipped file is counted once.
    """
    out_dir = Path(out_dir)
    frames, entries = [], []
    for scan in result.tars:
        if scan.rows is None:
            continue
        rows = scan.rows if keep is None else scan.rows[scan.rows["id"].map(keep)]
        if len(rows):
            rows = rows.assign(index=np.arange(len(rows), dtype=np.int64))
            frames.append(rows)
            entries.append(TarEntry(scan.index, scan.url, tuple(rows["id"])))
    if not entries:
        reasons = [f"{item['file']}: {item['reason']}" for item in result.skipped[:5]]
        raise TarIndexError(
            f"no usable samples in {len(result.urls)} tar(s) for {out_dir}: {reasons}"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / SUMMARY_NAME).unlink(missing_ok=True)  # complete again only when all is written
    write_tar_index(out_dir, TarIndex(result.kind, tuple(result.urls), result.spec, tuple(entries)))
    frame = pd.concat(frames, ignore_index=True)
    write_manifest(out_dir, frame)
    skipped = [dict(item) for item in (result.skipped if skipped is None else skipped)]
    summary: dict[str, Any] = {
        "kind": result.kind,
        "storage": STORAGE,
        "n_samples": len(frame),
        "n_shards": len(entries),
        "shard_size": len(entries[0].keys),
        "height": result.spec.height,
        "width": result.spec.width,
        "n_tars": len(result.urls),
        "n_tars_skipped": result.n_tars_skipped,
        "bytes_per_sample": round(float(frame["bytes"].mean()), 1),
        "n_skipped": len(skipped),
        "skipped": skipped,
    }
    if "valid_fraction" in frame:
        summary["mean_valid_fraction"] = round(float(frame["valid_fraction"].mean()), 6)
    summary["parameters"] = dict(parameters or {})
    write_summary(out_dir, summary)
    return summary
