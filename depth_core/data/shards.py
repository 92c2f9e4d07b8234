"""Fixed-size `.npz` shards written atomically, and a resumable sharded build.

A shard only ever appears under its final name through `atomic_io.atomic_path` (a fully
written and fsynced temp file renamed into place). An interrupted build leaves at most a
hidden temp file, which the next build removes before rewriting that shard. A shard under its
final name is reused only if it still reads back (every member passes its zip CRC check): a
file damaged after it was written, by a disk or a copy, is rewritten, never trusted.
"""

from __future__ import annotations

import multiprocessing
import re
import zipfile
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from depth_core.atomic_io import TEMP_SUFFIX, atomic_path, temp_prefix

SHARD_DIR = "shards"
_SHARD_RE = re.compile(r"^shard-(\d{6,})\.npz$")

MakeShard = Callable[[int, int, int], Mapping[str, np.ndarray]]


class ShardError(ValueError):
    """A shard that cannot be read or whose arrays are inconsistent; names the file."""


def shard_path(dataset_dir: str | Path, index: int) -> Path:
    """Final path of shard `index` inside a dataset directory."""
    if index < 0:
        raise ValueError(f"shard index must be >= 0, got {index}")
    return Path(dataset_dir) / SHARD_DIR / f"shard-{index:06d}.npz"


def shard_index(path: str | Path) -> int:
    """Index encoded in a shard file name (`shard-000012.npz` -> 12)."""
    match = _SHARD_RE.match(Path(path).name)
    if match is None:
        raise ValueError(f"{path} is not a shard file name (expected shard-NNNNNN.npz)")
    return int(match.group(1))


def write_shard(path: str | Path, arrays: Mapping[str, np.ndarray], compress: bool = False) -> Path:
    """Write `arrays` as one `.npz` at `path` atomically (see `atomic_io.atomic_path`).

    Uncompressed by default: on 256 real 128x128 RGB-D samples, deflate made the shard 2.5x
    smaller but reads 6-12x and writes ~18x slower (CPU a training loader would rather
    spend on augmentation); pass `compress=True` where disk matters more.
    """
    path = Path(path)
    if not arrays:
        raise ShardError(f"refusing to write an empty shard {path}")
    lengths = {
        name: np.shape(value)[0] if np.ndim(value) else None for name, value in arrays.items()
    }
    if len(set(lengths.values())) != 1 or None in lengths.values():
        raise ShardError(f"arrays for {path} must share their first dimension, got {lengths}")
    for name, value in arrays.items():
        if np.asarray(value).dtype == object:
            raise ShardError(f"array {name!r} for {path} has dtype object; use str or numbers")
    saver = np.savez_compressed if compress else np.savez
    with atomic_path(path) as temp, open(temp, "wb") as handle:
        saver(handle, **{name: np.asarray(value) for name, value in arrays.items()})
    return path


def read_shard(path: str | Path, keys: Iterable[str] | None = None) -> dict[str, np.ndarray]:
    """Load a shard's arrays (all, or only `keys`) into memory; raises ShardError naming it."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            wanted = archive.files if keys is None else list(keys)
            missing = [key for key in wanted if key not in archive.files]
            if missing:
                raise ShardError(f"shard {path} has no array(s) {missing} (has {archive.files})")
            return {key: archive[key] for key in wanted}
    except ShardError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise ShardError(f"cannot read shard {path}: {exc}") from exc


def shard_keys(path: str | Path) -> list[str]:
    """Names of the arrays in a shard, without loading them."""
    try:
        with np.load(Path(path), allow_pickle=False) as archive:
            return list(archive.files)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ShardError(f"cannot read shard {path}: {exc}") from exc


def is_complete(path: str | Path) -> bool:
    """A shard is complete when it exists, opens as a zip and every array passes its CRC check."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return bool(archive.namelist()) and archive.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        return False


def list_shards(dataset_dir: str | Path) -> list[Path]:
    """Complete shards of a dataset, sorted by index (temp files are ignored)."""
    directory = Path(dataset_dir) / SHARD_DIR
    if not directory.is_dir():
        return []
    found = [p for p in directory.iterdir() if _SHARD_RE.match(p.name) and p.is_file()]
    return sorted(found, key=shard_index)


def clean_temp_files(dataset_dir: str | Path, indices: Iterable[int] | None = None) -> int:
    """Remove leftover temp files (of the given shard indices only, or all); returns a count.

    Restricting to indices lets processes that build disjoint shard subsets of one dataset
    clean up after themselves without deleting each other's in-flight files.
    """
    directory = Path(dataset_dir) / SHARD_DIR
    if not directory.is_dir():
        return 0
    if indices is None:
        prefixes = (".shard-",)
    else:
        prefixes = tuple(temp_prefix(shard_path(dataset_dir, i)) for i in indices)
    removed = 0
    for entry in directory.iterdir():
        if entry.name.endswith(TEMP_SUFFIX) and entry.name.startswith(prefixes):
            entry.unlink(missing_ok=True)
            removed += 1
    return removed


def num_shards(n_items: int, shard_size: int) -> int:
    """Number of shards holding `n_items` in shards of `shard_size` (the last may be short)."""
    if shard_size <= 0:
        raise ValueError(f"shard_size must be positive, got {shard_size}")
    if n_items < 0:
        raise ValueError(f"n_items must be >= 0, got {n_items}")
    return -(-n_items // shard_size)


@dataclass(frozen=True)
class BuildStats:
    """What a sharded build did: shards written now, skipped as already complete, planned."""

    written: int
    skipped: int
    total: int
    temp_files_removed: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def build_sharded(
    dataset_dir: str | Path,
    n_items: int,
    shard_size: int,
    make_shard: MakeShard,
    shard_indices: Iterable[int] | None = None,
    progress: bool = True,
    compress: bool = False,
    desc: str | None = None,
    workers: int = 1,
) -> BuildStats:
    """Write the missing shards of a dataset of `n_items` items, `shard_size` per shard.

    `make_shard(shard_index, start, count)` returns the arrays of items `start .. start+count`
    (each with first dimension `count`). Complete shards are skipped, so a re-run after a
    crash resumes where it stopped; `shard_indices` restricts the build to a subset so several
    processes or machines can share one dataset (e.g. `range(rank, n, world)`). `desc`
    labels the progress bar. With `workers > 1` the missing shards are built by that many
    spawned processes (`make_shard` must then be picklable, e.g. a module-level class); each
    writes its own shard atomically, so the result is the same files as with one process.
    """
    total = num_shards(n_items, shard_size)
    if shard_indices is None:
        indices = list(range(total))
    else:
        indices = sorted({int(i) for i in shard_indices})
        bad = [i for i in indices if not 0 <= i < total]
        if bad:
            raise ValueError(f"shard indices {bad} out of range for {total} shards")
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    removed = clean_temp_files(dataset_dir, indices)
    pending = [i for i in indices if not is_complete(shard_path(dataset_dir, i))]
    jobs = [
        (
            make_shard,
            str(dataset_dir),
            i,
            i * shard_size,
            min(shard_size, n_items - i * shard_size),
            compress,
        )
        for i in pending
    ]
    label = desc or f"shards {Path(dataset_dir).name}"
    bar = tqdm(
        total=len(indices),
        initial=len(indices) - len(pending),
        desc=label,
        unit="shard",
        disable=not progress,
    )
    try:
        if workers == 1 or len(jobs) < 2:
            for job in jobs:
                _build_one(job)
                bar.update()
        else:
            context = multiprocessing.get_context("spawn")
            with ProcessPoolExecutor(min(workers, len(jobs)), mp_context=context) as pool:
                for future in as_completed([pool.submit(_build_one, job) for job in jobs]):
                    future.result()
                    bar.update()
    finally:
        bar.close()
    return BuildStats(
        written=len(jobs),
        skipped=len(indices) - len(jobs),
        total=len(indices),
        temp_files_removed=removed,
    )


def _build_one(job: tuple) -> Path:
    """Make and write one shard (in this process or a worker), checking the arrays' lengths."""
    make_shard, dataset_dir, index, start, count, compress = job
    arrays = make_shard(index, start, count)
    bad_lengths = {k: np.shape(v)[:1] for k, v in arrays.items() if np.shape(v)[:1] != (count,)}
    if bad_lengths:
        raise ShardError(
            f"make_shard({index}, {start}, {count}) returned arrays whose first dimension "
            f"is not {count}: {bad_lengths}"
        )
    return write_shard(shard_path(dataset_dir, index), arrays, compress=compress)
