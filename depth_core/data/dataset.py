"""Streaming torch datasets over sharded dataset directories.

The whole dataset never has to fit in memory: each DataLoader worker holds at most
`shards_in_memory` shards at once and shuffles samples within that window (the shuffle
buffer), after shuffling the shard order itself. Everything is a pure function of
`(seed, epoch)` and the process layout, so a run can be reproduced and resumed:

- the epoch's sample order (shards shuffled, each in storage order) is cut into
  `world_size` contiguous runs of equal length (within one sample): rank r streams run r,
  a shard split at a boundary is read by both ranks for their own parts. Each rank's
  segments are then dealt to its DataLoader workers, so across ranks and workers every
  sample is read exactly once per epoch and no rank waits for a longer one;
- `set_epoch(epoch, skip)` restarts at sample `skip` of that epoch. With several workers the
  DataLoader interleaves the workers' batches round-robin, so mapping a position onto workers
  needs the loader's `batch_size` and `drop_last` (pass the same values to the dataset).
  Create a fresh iterator per epoch (`persistent_workers=False`) so workers see the epoch,
  and resume with the same seed, `shards_in_memory`, ranks, workers and batch size.

A dataset directory that indexes WebDataset tars (`tar_shards.index`) streams the same way:
each tar is one shard, read and decoded (`tar_shards.decode`) by the worker that streams it.

Every sample is a dict `{"image": float32 (3, H, W) in [0, 1], "disparity": float32 (H, W),
"mask": bool (H, W), "pseudo": bool, "id": str}`. A `transform` gets the dict with an extra
integer `"seed"` (a pure function of seed, epoch and the sample's place) to seed its
randomness; the key is removed afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from depth_core.data.manifest import (
    dataset_kind,
    is_dataset_complete,
    read_manifest,
    valid_pseudo_disparity,
)
from depth_core.data.shards import list_shards, read_shard, shard_index, shard_keys
from depth_core.data.tar_shards.index import TarIndex, is_tar_dataset, read_tar_index
from depth_core.data.tar_shards.reader import read_tar

Sample = dict[str, Any]
Transform = Callable[[Sample], Sample]


@dataclass(frozen=True)
class Segment:
    """Samples `start:stop` (storage order) of the shard at `position` of `shard_paths`."""

    position: int
    start: int
    stop: int

    @property
    def size(self) -> int:
        return self.stop - self.start


def rank_runs(sizes: Sequence[int], order: Sequence[int], world_size: int) -> list[list[Segment]]:
    """Cut the samples of shards visited in `order` into `world_size` contiguous runs.

    Run r covers samples `r*N//W : (r+1)*N//W` of the concatenated order, so runs differ by
    at most one sample whatever the shard sizes; a shard crossing a boundary is split.
    """
    total = sum(sizes[p] for p in order)
    bounds = [r * total // world_size for r in range(world_size + 1)]
    runs: list[list[Segment]] = [[] for _ in range(world_size)]
    offset = 0
    for position in order:
        begin, end = offset, offset + sizes[position]
        for rank in range(world_size):
            lo, hi = max(begin, bounds[rank]), min(end, bounds[rank + 1])
            if lo < hi:
                runs[rank].append(Segment(int(position), lo - begin, hi - begin))
        offset = end
    return runs


class PseudoLabelMismatchError(ValueError):
    """Pseudo-label shards that do not line up with the unlabeled shards they label."""


def derive_seed(*parts: int) -> int:
    """A 63-bit seed that is a pure function of integer parts (order matters)."""
    entropy = [int(p) % (1 << 63) for p in parts]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> 1)


def _worker_layout() -> tuple[int, int]:
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def worker_skips(
    skip: int, counts: Sequence[int], batch_size: int | None, drop_last: bool = False
) -> tuple[list[int], int]:
    """Split a global resume position into per-worker positions.

    A DataLoader over an IterableDataset takes one batch from each live worker in turn
    (worker 0 first), each worker batching its own stream; this replays that order. Returns
    the samples each worker had delivered and the worker whose batch would have come next:
    the resumed loader starts again at physical worker 0, so worker `p` must play the role of
    worker `(first + p) % num_workers` to continue the same sequence.
    """
    usable = [(n // batch_size) * batch_size if (drop_last and batch_size) else n for n in counts]
    if skip > sum(usable):
        raise ValueError(f"skip={skip} exceeds the {sum(usable)} samples of this epoch")
    if len(counts) == 1 or skip == 0:
        return [skip] + [0] * (len(counts) - 1), 0
    if not batch_size:
        raise ValueError(
            "batch_size is needed to resume (skip > 0) with several DataLoader workers"
        )
    batches = []
    for n in counts:
        sizes = [batch_size] * (n // batch_size)
        if n % batch_size and not drop_last:
            sizes.append(n % batch_size)
        batches.append(sizes)
    consumed = [0] * len(counts)
    cursor = [0] * len(counts)
    remaining = skip
    last = -1
    while remaining > 0:
        for worker, sizes in enumerate(batches):
            if cursor[worker] < len(sizes) and remaining > 0:
                take = min(sizes[cursor[worker]], remaining)
                consumed[worker] += take
                remaining -= take
                cursor[worker] += 1
                last = worker
    return consumed, (last + 1) % len(counts)


class ShardDataset(IterableDataset):
    """Stream samples of one dataset directory (labeled by default).

    `require_depth=False` also accepts unlabeled sets (disparity 0, mask False everywhere).
    """

    _stream_tag = 0

    def __init__(
        self,
        dataset_dir: str | Path,
        *,
        shuffle: bool = True,
        seed: int = 0,
        shards_in_memory: int = 2,
        rank: int = 0,
        world_size: int = 1,
        transform: Transform | None = None,
        epoch: int = 0,
        skip: int = 0,
        batch_size: int | None = None,
        drop_last: bool = False,
        require_depth: bool = True,
        allow_incomplete: bool = False,
    ) -> None:
        super().__init__()
        if shards_in_memory < 1:
            raise ValueError(f"shards_in_memory must be >= 1, got {shards_in_memory}")
        if world_size < 1 or not 0 <= rank < world_size:
            raise ValueError(
                f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}"
            )
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        self.dataset_dir = Path(dataset_dir)
        self.shuffle = shuffle
        self.seed = seed
        self.shards_in_memory = shards_in_memory
        self.rank = rank
        self.world_size = world_size
        self.transform = transform
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.tar_index = _complete_tar_index(self.dataset_dir, allow_incomplete)
        if self.tar_index is not None:
            self.shard_paths = [tar.url for tar in self.tar_index.tars]
            self.shard_numbers = [tar.index for tar in self.tar_index.tars]
            self.kind = self.tar_index.kind
            self._check_kind(require_depth)
            self.shard_sizes = [len(tar.keys) for tar in self.tar_index.tars]
            self.set_epoch(epoch, skip)
            return
        self.shard_paths = _complete_shards(self.dataset_dir, allow_incomplete)
        self.shard_numbers = [shard_index(p) for p in self.shard_paths]
        self.kind = dataset_kind(shard_keys(self.shard_paths[0]))
        self._check_kind(require_depth)
        self.shard_sizes = _shard_sizes(self.dataset_dir, self.shard_paths)
        self.set_epoch(epoch, skip)

    def _check_kind(self, require_depth: bool) -> None:
        if self.kind == "pseudo":
            raise ValueError(
                f"{self.dataset_dir} holds pseudo-labels; stream it with PseudoLabelDataset("
                "unlabeled_dir, pseudo_dir)"
            )
        if require_depth and self.kind != "labeled":
            raise ValueError(f"{self.dataset_dir} is an unlabeled dataset (no depth in its shards)")

    # ------------------------------------------------------------------ epoch and layout

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        """Select the epoch to stream and how many of its samples were already consumed."""
        if epoch < 0 or skip < 0:
            raise ValueError(f"epoch and skip must be >= 0, got epoch={epoch}, skip={skip}")
        self.epoch = epoch
        self.skip = skip

    def shard_order(self, epoch: int, cycle: int = 0, salt: int = 0) -> np.ndarray:
        """Positions of all shards in the order an epoch visits them (same on every rank)."""
        if not self.shuffle:
            return np.arange(len(self.shard_paths))
        rng = np.random.default_rng(derive_seed(self.seed, self._stream_tag, epoch, cycle, salt, 1))
        return rng.permutation(len(self.shard_paths))

    def rank_segments(self, order: Sequence[int]) -> list[Segment]:
        """This rank's contiguous run of the samples of the shards in `order`."""
        return rank_runs(self.shard_sizes, order, self.world_size)[self.rank]

    def assigned_segments(
        self, order: Sequence[int], worker: int, num_workers: int
    ) -> list[Segment]:
        """What one DataLoader worker of this rank streams: every num_workers-th segment."""
        return self.rank_segments(order)[worker::num_workers]

    def worker_counts(self, epoch: int, num_workers: int) -> list[int]:
        segments = self.rank_segments(self.shard_order(epoch))
        return [sum(s.size for s in segments[w::num_workers]) for w in range(num_workers)]

    def __len__(self) -> int:
        """Samples this rank streams in the current epoch (all its workers together)."""
        return sum(self.worker_counts(self.epoch, 1))

    # ------------------------------------------------------------------ reading

    def _load(self, segment: Segment) -> dict[str, np.ndarray]:
        """The arrays of one segment, indexed from `segment.start`."""
        if self.tar_index is not None:
            return self._read_tar(segment)
        path = self.shard_paths[segment.position]
        keys = ["id", "image", "depth", "mask"] if self.kind == "labeled" else ["id", "image"]
        present = set(shard_keys(path))
        return self._cut(read_shard(path, [k for k in keys if k in present]), segment)

    def _cut(self, arrays: dict[str, np.ndarray], segment: Segment) -> dict[str, np.ndarray]:
        """Views of a whole shard's arrays limited to the segment (no copy)."""
        if segment.start == 0 and segment.stop == self.shard_sizes[segment.position]:
            return arrays
        return {name: value[segment.start : segment.stop] for name, value in arrays.items()}

    def _read_tar(self, segment: Segment, with_depth: bool = True) -> dict[str, np.ndarray]:
        """Decode only the segment's members: a tar split between two ranks is read by both,
        and each decodes its own part."""
        index = self.tar_index
        entry = index.tars[segment.position]
        part = replace(entry, keys=entry.keys[segment.start : segment.stop])
        return read_tar(part, index.kind, index.decode, with_depth=with_depth)

    def _image_ids(self, position: int) -> np.ndarray:
        """Ids of one image shard in order: the tar's indexed keys, or the shard's ids."""
        if self.tar_index is not None:
            return np.asarray(self.tar_index.tars[position].keys, dtype=str)
        return read_shard(self.shard_paths[position], ["id"])["id"]

    def _make_sample(self, arrays: dict[str, np.ndarray], i: int) -> Sample:
        image = _image_tensor(arrays["image"][i])
        if "depth" in arrays:
            depth = arrays["depth"][i].astype(np.float32)
            valid = np.isfinite(depth) & (depth > 0)
            if "mask" in arrays:
                valid &= arrays["mask"][i].astype(bool)
            disparity = np.zeros_like(depth)
            np.divide(1.0, depth, out=disparity, where=valid)
        else:
            disparity = np.zeros(image.shape[1:], dtype=np.float32)
            valid = np.zeros(image.shape[1:], dtype=bool)
        return {
            "image": image,
            "disparity": torch.from_numpy(disparity),
            "mask": torch.from_numpy(valid),
            "pseudo": False,
            "id": str(arrays["id"][i]),
        }

    def stream(
        self, segments: Sequence[Segment], epoch: int, skip: int = 0, cycle: int = 0, salt: int = 0
    ) -> Iterator[Sample]:
        """Samples of the given segments, `shards_in_memory` at a time, shuffled per window.

        A sample's augmentation seed depends on its shard and place in the shard only, so it
        is the same whatever the number of ranks and workers.
        """
        window_size = self.shards_in_memory
        for begin in range(0, len(segments), window_size):
            window = list(segments[begin : begin + window_size])
            sizes = [segment.size for segment in window]
            total = sum(sizes)
            if skip >= total:  # resume: skip whole windows without reading them
                skip -= total
                continue
            if self.shuffle:
                head = window[0]
                where = (head.position,) if head.start == 0 else (head.position, head.start)
                key = derive_seed(self.seed, self._stream_tag, epoch, cycle, salt, 2, *where)
                order = np.random.default_rng(key).permutation(total)
            else:
                order = np.arange(total)
            offsets = np.cumsum([0] + sizes)
            loaded = [self._load(segment) for segment in window]
            for flat in order[skip:]:
                which = int(np.searchsorted(offsets, flat, side="right") - 1)
                within = int(flat - offsets[which])
                local = window[which].start + within  # place in the whole shard
                sample = self._make_sample(loaded[which], within)
                shard = self.shard_numbers[window[which].position]
                sample["seed"] = derive_seed(
                    self.seed, self._stream_tag, epoch, cycle, salt, 3, shard, local
                )
                yield self._finish(sample)
            skip = 0
            del loaded  # release this window before the next one is read

    def _finish(self, sample: Sample) -> Sample:
        if self.transform is not None:
            sample = self.transform(sample)
            if not isinstance(sample, dict):
                raise TypeError(
                    f"transform {self.transform!r} must return a dict, got {type(sample).__name__}"
                )
        sample.pop("seed", None)
        return sample

    def __iter__(self) -> Iterator[Sample]:
        physical, num_workers = _worker_layout()
        counts = self.worker_counts(self.epoch, num_workers)
        skips, first = worker_skips(self.skip, counts, self.batch_size, self.drop_last)
        worker = (first + physical) % num_workers
        skip = skips[worker]
        segments = self.assigned_segments(self.shard_order(self.epoch), worker, num_workers)
        limit = counts[worker]
        if self.drop_last and self.batch_size:  # the loader would drop the partial batch anyway
            limit = (limit // self.batch_size) * self.batch_size
        for produced, sample in enumerate(self.stream(segments, self.epoch, skip), start=skip):
            if produced >= limit:
                return
            yield sample


class PseudoLabelDataset(ShardDataset):
    """Stream unlabeled images with their teacher disparity as the target.

    Pseudo shard `k` labels unlabeled shard `k` (tar `k` of a tar-backed set) sample by
    sample; shard sets, sizes and ids are checked up front, and each shard's ids again as it
    is read, so an image never pairs with another image's label. Non-finite or negative pseudo disparity is masked; zero is a label
    (the teacher's "farthest"), as dense as Depth Anything's pseudo-labels.
    """

    _stream_tag = 1

    def __init__(self, images_dir: str | Path, pseudo_dir: str | Path, **kwargs: Any) -> None:
        self.pseudo_dir = Path(pseudo_dir)
        allow_incomplete = kwargs.get("allow_incomplete", False)
        self.pseudo_paths = _complete_shards(self.pseudo_dir, allow_incomplete)
        kind = dataset_kind(shard_keys(self.pseudo_paths[0]))
        if kind != "pseudo":
            raise ValueError(
                f"{self.pseudo_dir} is a {kind} dataset, not pseudo-labels (no 'disparity')"
            )
        kwargs.setdefault("require_depth", False)
        super().__init__(images_dir, **kwargs)
        self._check_alignment()

    def _check_kind(self, require_depth: bool) -> None:
        if self.kind == "pseudo":
            raise ValueError(
                f"{self.dataset_dir} holds pseudo-labels; pass the unlabeled image set first"
            )

    def _check_alignment(self) -> None:
        images = list(self.shard_numbers)
        pseudo = [shard_index(p) for p in self.pseudo_paths]
        if images != pseudo:
            missing = sorted(set(images) - set(pseudo))
            extra = sorted(set(pseudo) - set(images))
            raise PseudoLabelMismatchError(
                f"pseudo-label shards in {self.pseudo_dir} do not match image shards in "
                f"{self.dataset_dir}: missing {missing[:10]}, unexpected {extra[:10]}"
            )
        for position, (image_path, pseudo_path) in enumerate(
            zip(self.shard_paths, self.pseudo_paths)
        ):
            _check_ids(
                self._image_ids(position),
                read_shard(pseudo_path, ["id"])["id"],
                image_path,
                pseudo_path,
            )

    def _load(self, segment: Segment) -> dict[str, np.ndarray]:
        position = segment.position
        if self.tar_index is not None:
            images = self._read_tar(segment, with_depth=False)
        else:
            images = self._cut(read_shard(self.shard_paths[position], ["id", "image"]), segment)
        pseudo = self._cut(read_shard(self.pseudo_paths[position], ["id", "disparity"]), segment)
        _check_ids(
            images["id"], pseudo["id"], self.shard_paths[position], self.pseudo_paths[position]
        )
        return {"id": images["id"], "image": images["image"], "disparity": pseudo["disparity"]}

    def _make_sample(self, arrays: dict[str, np.ndarray], i: int) -> Sample:
        disparity = arrays["disparity"][i].astype(np.float32)
        valid = valid_pseudo_disparity(disparity)
        disparity[~valid] = 0.0
        return {
            "image": _image_tensor(arrays["image"][i]),
            "disparity": torch.from_numpy(disparity),
            "mask": torch.from_numpy(valid),
            "pseudo": True,
            "id": str(arrays["id"][i]),
        }


class MixedDataset(IterableDataset):
    """Interleave labeled and pseudo-labelled samples at a fixed ratio, deterministically.

    `ratio=(a, b)` yields `a` labeled then `b` pseudo samples, repeatedly, in every worker
    (with `batch_size` a multiple of `a + b`, every batch has exactly that mix). The epoch is
    one pass over the pseudo set (split exactly across ranks and workers); the labeled set is
    cycled as needed. `(0, 1)` streams pseudo-labels only, `(1, 0)` labeled data only.
    Each child keeps its own transform (e.g. strong perturbations on pseudo samples only).
    """

    def __init__(
        self,
        labeled: ShardDataset | None,
        pseudo: ShardDataset | None,
        ratio: tuple[int, int] = (1, 2),
        *,
        epoch: int = 0,
        skip: int = 0,
        batch_size: int | None = None,
        drop_last: bool = False,
    ) -> None:
        super().__init__()
        a, b = (int(r) for r in ratio)
        if a < 0 or b < 0 or a + b == 0:
            raise ValueError(f"ratio must be two non-negative integers, not both 0; got {ratio}")
        if a and labeled is None:
            raise ValueError(
                f"ratio {ratio} asks for labeled samples but no labeled dataset was given"
            )
        if b and pseudo is None:
            raise ValueError(
                f"ratio {ratio} asks for pseudo samples but no pseudo dataset was given"
            )
        self.ratio = (a, b)
        self.primary = pseudo if b else labeled
        self.secondary = labeled if (a and b) else None
        if self.secondary is not None and (
            (self.secondary.rank, self.secondary.world_size)
            != (self.primary.rank, self.primary.world_size)
        ):
            raise ValueError("labeled and pseudo datasets must use the same rank and world_size")
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.set_epoch(epoch, skip)

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        if epoch < 0 or skip < 0:
            raise ValueError(f"epoch and skip must be >= 0, got epoch={epoch}, skip={skip}")
        self.epoch = epoch
        self.skip = skip

    def _worker_length(self, primary_count: int) -> int:
        a, b = self.ratio
        if self.secondary is None:
            return primary_count
        return primary_count + a * math.ceil(primary_count / b)

    def worker_counts(self, epoch: int, num_workers: int) -> list[int]:
        """Samples each DataLoader worker of this rank yields in `epoch`."""
        return [self._worker_length(n) for n in self.primary.worker_counts(epoch, num_workers)]

    def num_samples(self, num_workers: int = 1) -> int:
        """Samples this rank yields in the current epoch with `num_workers` workers."""
        return sum(self.worker_counts(self.epoch, num_workers))

    def __iter__(self) -> Iterator[Sample]:
        physical, num_workers = _worker_layout()
        primary_counts = self.primary.worker_counts(self.epoch, num_workers)
        lengths = [self._worker_length(n) for n in primary_counts]
        skips, first = worker_skips(self.skip, lengths, self.batch_size, self.drop_last)
        worker = (first + physical) % num_workers
        skip = skips[worker]
        a, b = self.ratio
        group = a + b
        if self.secondary is None:
            primary_skip, secondary_skip = skip, 0
        else:
            full, rest = divmod(skip, group)
            primary_skip = full * b + max(0, rest - a)
            secondary_skip = full * a + min(rest, a)
        segments = self.primary.assigned_segments(
            self.primary.shard_order(self.epoch), worker, num_workers
        )
        primary = self.primary.stream(segments, self.epoch, primary_skip)
        secondary = (
            self._cycled_secondary(worker, num_workers, secondary_skip) if self.secondary else None
        )
        limit = lengths[worker]
        if self.drop_last and self.batch_size:
            limit = (limit // self.batch_size) * self.batch_size
        remaining_primary = primary_counts[worker] - primary_skip
        position = skip
        while position < limit:
            if secondary is not None and position % group < a:
                if remaining_primary <= 0:
                    return
                yield next(secondary)
            else:
                if remaining_primary <= 0:
                    return
                remaining_primary -= 1
                yield next(primary)
            position += 1

    def _cycled_secondary(self, worker: int, num_workers: int, skip: int) -> Iterator[Sample]:
        """The labeled stream repeated forever, each pass with a fresh shard/sample order.

        Each pass is split across ranks and workers like an epoch. With fewer shards than
        (ranks x workers), every worker reads all of them (its own order) rather than some
        workers getting none.
        """
        data = self.secondary
        share = len(data.shard_paths) >= data.world_size * num_workers
        salt = 0 if share else 1 + data.rank * num_workers + worker
        cycle = 0
        while True:
            order = data.shard_order(self.epoch, cycle, salt)
            if share:
                mine = data.rank_segments(order)
                segments = mine[worker::num_workers] or mine
            else:
                segments = [Segment(int(p), 0, data.shard_sizes[p]) for p in order]
            count = sum(segment.size for segment in segments)
            if count == 0:
                raise ValueError(
                    f"labeled dataset {data.dataset_dir} has no samples for worker {worker}"
                )
            if skip >= count:
                skip -= count
            else:
                yield from data.stream(segments, self.epoch, skip, cycle=cycle, salt=salt)
                skip = 0
            cycle += 1


# ---------------------------------------------------------------------- helpers


def _image_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) -> a new float32 (3, H, W) tensor in [0, 1] (no view of the shard)."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)
    return tensor.to(torch.float32, memory_format=torch.contiguous_format).div_(255.0)


def _check_ids(
    image_ids: np.ndarray, pseudo_ids: np.ndarray, image_path: Path, pseudo_path: Path
) -> None:
    if image_ids.shape != pseudo_ids.shape or not np.array_equal(
        image_ids.astype(str), pseudo_ids.astype(str)
    ):
        if image_ids.shape != pseudo_ids.shape:
            detail = f"{len(image_ids)} images vs {len(pseudo_ids)} pseudo-labels"
        else:
            first = int(np.flatnonzero(image_ids.astype(str) != pseudo_ids.astype(str))[0])
            detail = (
                f"sample {first}: image id {image_ids[first]!r} vs pseudo id {pseudo_ids[first]!r}"
            )
        raise PseudoLabelMismatchError(f"ids of {pseudo_path} do not match {image_path} ({detail})")


def _complete_tar_index(dataset_dir: Path, allow_incomplete: bool) -> TarIndex | None:
    """The tar index of a tar-backed dataset directory (None for `.npz` shards)."""
    if not is_tar_dataset(dataset_dir):
        return None
    if not allow_incomplete and not is_dataset_complete(dataset_dir):
        raise ValueError(
            f"dataset {dataset_dir} is incomplete (no summary.json); finish building it first"
        )
    index = read_tar_index(dataset_dir)
    if not index.tars:
        raise FileNotFoundError(f"dataset {dataset_dir} indexes no tars")
    return index


def _complete_shards(dataset_dir: Path, allow_incomplete: bool) -> list[Path]:
    if not dataset_dir.is_dir():
        raise FileNotFoundError(f"dataset directory {dataset_dir} does not exist")
    if not allow_incomplete and not is_dataset_complete(dataset_dir):
        raise ValueError(
            f"dataset {dataset_dir} is incomplete (no summary.json); finish building it first"
        )
    shards = list_shards(dataset_dir)
    if not shards:
        raise FileNotFoundError(f"dataset {dataset_dir} has no shards")
    return shards


def _shard_sizes(dataset_dir: Path, shard_paths: list[Path]) -> list[int]:
    """Samples per shard, from the manifest when it covers exactly these shards."""
    indices = [shard_index(p) for p in shard_paths]
    try:
        counts = read_manifest(dataset_dir)["shard"].value_counts()
        if sorted(counts.index.tolist()) == indices:
            return [int(counts[i]) for i in indices]
    except (OSError, KeyError, ValueError):  # no or unreadable manifest: count ids instead
        pass
    return [len(read_shard(p, ["id"])["id"]) for p in shard_paths]


def load_arrays(
    dataset_dir: str | Path, limit: int | None = None, keys: Sequence[str] | None = None
) -> dict[str, np.ndarray]:
    """All (or the first `limit`) samples of a small dataset as stacked numpy arrays.

    Meant for evaluation sets; large training sets should be streamed instead. A tar-backed
    set is decoded tar by tar, as training decodes it.
    """
    if is_tar_dataset(dataset_dir):
        return _load_tar_arrays(read_tar_index(dataset_dir), limit, keys)
    shards = list_shards(dataset_dir)
    if not shards:
        raise FileNotFoundError(f"dataset {dataset_dir} has no shards")
    parts: dict[str, list[np.ndarray]] = {}
    have = 0
    for path in shards:
        if limit is not None and have >= limit:
            break
        arrays = read_shard(path, keys)
        take = len(arrays["id"]) if "id" in arrays else len(next(iter(arrays.values())))
        if limit is not None:
            take = min(take, limit - have)
        for name, value in arrays.items():
            parts.setdefault(name, []).append(value[:take])
        have += take
    return {name: np.concatenate(values) for name, values in parts.items()}


def _load_tar_arrays(
    index: TarIndex, limit: int | None, keys: Sequence[str] | None
) -> dict[str, np.ndarray]:
    parts: dict[str, list[np.ndarray]] = {}
    have = 0
    for tar in index.tars:
        if limit is not None and have >= limit:
            break
        arrays = read_tar(tar, index.kind, index.decode)
        take = len(arrays["id"]) if limit is None else min(len(arrays["id"]), limit - have)
        for name, value in arrays.items():
            if keys is None or name in keys:
                parts.setdefault(name, []).append(value[:take])
        have += take
    return {name: np.concatenate(values) for name, values in parts.items()}
