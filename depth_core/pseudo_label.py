"""Pseudo-labelling: the teacher's disparity for every unlabeled image, shard by shard.

Pseudo shard `k` labels input shard `k` one-to-one (same ids, float16 disparity), so the
students' PseudoLabelDataset can stream both side by side. Rank `r` of `W` labels the whole
input shards `r::W` (a shard is never split, so its bytes do not depend on the world size), each
predicted in batches under torch.inference_mode, written atomically, and skipped on a re-run
when it is already there with the right ids: an interrupted run resumes under any world size,
and memory stays one shard whatever the dataset size. `finish_pseudo_labels`, called once after
every rank is done, checks every shard against its input and writes summary.json, which marks
the dataset complete.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from depth_core.data.input_shards import InputShard, input_shards
from depth_core.data.manifest import finalize_dataset, is_dataset_complete
from depth_core.data.shards import (
    ShardError,
    clean_temp_files,
    is_complete,
    list_shards,
    read_shard,
    shard_index,
    shard_path,
    write_shard,
)
from depth_core.inference import DEFAULT_AMP, check_scales, iterate_predictions, load_for_inference

# Each stored map's largest value. float16 represents 2**-14 .. 65504 at full precision, and
# a teacher with a softplus head puts far backgrounds at 1e-6 of the peak or less: scaled to a
# peak of 1 those pixels fell into float16's subnormals and lost their order (measured: the
# stored labels' pair accuracy dropped by 0.001). A peak of 2**14 keeps 28 binades exact.
LABEL_PEAK = 2.0**14


def to_float16_labels(disparity: np.ndarray) -> np.ndarray:
    """Scale each map to a maximum of ``LABEL_PEAK``, then store as float16.

    Affine-invariant disparity has no fixed scale: a model trained with a scale-invariant loss
    can output values far beyond float16's range (65504). Multiplying by a positive per-image
    constant is lossless for the scale-and-shift-invariant losses and keeps disparity >= 0;
    non-finite predictions stay non-finite so they are counted and masked.
    """
    flat = disparity.reshape(len(disparity), -1).astype(np.float32)
    finite = np.where(np.isfinite(flat), flat, 0.0)
    unit = np.maximum(np.abs(finite).max(axis=1) / LABEL_PEAK, np.finfo(np.float32).tiny)
    return (disparity / unit.reshape(-1, *([1] * (disparity.ndim - 1)))).astype(np.float16)


def _has_ids(path: Path, ids: np.ndarray) -> bool:
    """An existing pseudo shard is reusable when it labels exactly these images."""
    try:
        existing = read_shard(path, ["id"])["id"]
    except ShardError:
        return False
    return existing.shape == ids.shape and bool(
        np.array_equal(existing.astype(str), ids.astype(str))
    )


def label_images(
    model: torch.nn.Module,
    images: np.ndarray,
    batch_size: int,
    device: torch.device,
    amp: str,
    flip_tta: bool,
    scales: Sequence[float] = (1.0,),
) -> np.ndarray:
    """(N, H, W, 3) uint8 -> (N, H, W) float32 disparity, batched, under inference_mode."""
    predictions = iterate_predictions(
        model,
        iter(images),
        batch_size=batch_size,
        device=device,
        flip_tta=flip_tta,
        amp=amp,
        scales=scales,
    )
    return (
        np.stack(list(predictions))
        if len(images)
        else np.zeros((0,) + images.shape[1:3], np.float32)
    )


class PseudoLabelError(RuntimeError):
    """A shard could not be labelled, or a finished labelling does not match its input."""


def rank_shards(shards: list[InputShard], rank: int, world_size: int) -> list[InputShard]:
    """The whole shards rank `rank` of `world_size` labels: every `world_size`-th, from `rank`."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not a rank of a world of size {world_size}")
    return shards[rank::world_size]


def label_shards(
    checkpoint: str | Path,
    unlabeled_dir: str | Path,
    out_dir: str | Path,
    batch_size: int = 32,
    device: str | torch.device = "auto",
    amp: str = DEFAULT_AMP,
    flip_tta: bool = False,
    scales: Sequence[float] = (1.0,),
    rank: int = 0,
    world_size: int = 1,
    progress: bool = True,
) -> dict[str, float | str]:
    """Label this rank's shards of `unlabeled_dir` with the model at `checkpoint` (a
    depth-distill .safetensors file, a local Hugging Face folder or an ONNX export).

    `flip_tta` and `scales` (input resize factors, averaged) are test-time augmentation: the
    labels can be better than one plain forward pass of the teacher. The model is loaded and
    run as `depth-distill predict` runs it (`depth_core.inference`), in `amp` ("auto": bf16
    where native). A shard that fails raises PseudoLabelError naming it.

    Returns n_images (labelled now), n_shards_written, n_shards_skipped, nan_count (non-finite
    predicted pixels, stored as-is and masked by the dataset), images_per_second, bf16 (1/0)
    and amp (the precision it ran in).
    """
    unlabeled_dir, out_dir = Path(unlabeled_dir), Path(out_dir)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    scales = check_scales(scales)
    if not is_dataset_complete(unlabeled_dir):
        raise FileNotFoundError(f"{unlabeled_dir} is not a complete dataset (no summary.json)")
    mine = rank_shards(input_shards(unlabeled_dir), rank, world_size)
    loaded = load_for_inference(checkpoint, device, amp)
    model, device, amp = loaded.model, loaded.device, loaded.amp
    clean_temp_files(out_dir, [shard.index for shard in mine])

    written = skipped = n_images = nan_count = 0
    seconds = 0.0
    for shard in tqdm(
        mine, desc=f"pseudo-labels (rank {rank})", unit="shard", disable=not progress
    ):
        try:
            ids, images = shard.read()
            target = shard_path(out_dir, shard.index)
            if is_complete(target) and _has_ids(target, ids):
                skipped += 1
                continue
            start = time.perf_counter()
            disparity = label_images(model, images, batch_size, device, amp, flip_tta, scales)
            seconds += time.perf_counter() - start
            stored = to_float16_labels(disparity)
            write_shard(target, {"id": ids, "disparity": stored})
        except Exception as error:
            raise PseudoLabelError(f"shard {shard.index} ({shard.source}): {error}") from error
        nan_count += int((~np.isfinite(stored)).sum())
        written += 1
        n_images += len(stored)
    return {
        "n_images": float(n_images),
        "n_shards_written": float(written),
        "n_shards_skipped": float(skipped),
        "nan_count": float(nan_count),
        "images_per_second": n_images / seconds if seconds > 0 else 0.0,
        "bf16": float(amp == "bf16"),
        "amp": amp,
    }


def finish_pseudo_labels(
    unlabeled_dir: str | Path, out_dir: str | Path, parameters: dict
) -> dict[str, float]:
    """Once every rank is done: check that each input shard has its pseudo shard, holding
    exactly its ids, drop shards of images that no longer exist, and write summary.json.

    Raises PseudoLabelError naming the first shard that is missing or does not match, and then
    writes nothing: summary.json never appears before every shard is there.
    """
    unlabeled_dir, out_dir = Path(unlabeled_dir), Path(out_dir)
    shards = input_shards(unlabeled_dir)
    for shard in shards:
        target = shard_path(out_dir, shard.index)
        if not is_complete(target):
            raise PseudoLabelError(
                f"shard {shard.index} ({shard.source}): no pseudo-labels {target}"
            )
        if not _has_ids(target, shard.read_ids()):
            raise PseudoLabelError(
                f"shard {shard.index} ({shard.source}): {target} labels other images"
            )
    known = {shard.index for shard in shards}
    for stale in list_shards(out_dir):
        if shard_index(stale) not in known:
            stale.unlink()
    finalize_dataset(out_dir, parameters=parameters)
    return {"complete": 1.0}


def labelling_parameters(
    checkpoint: str | Path,
    unlabeled_dir: str | Path,
    flip_tta: bool,
    scales: Sequence[float],
    amp: str,
) -> dict:
    """What summary.json records of how the labels were made (nothing of who made them)."""
    return {
        "checkpoint": str(checkpoint),
        "unlabeled_dir": str(unlabeled_dir),
        "flip_tta": flip_tta,
        "scales": list(check_scales(scales)),
        "amp": amp,
    }


def generate_pseudo_labels(
    checkpoint: str | Path,
    unlabeled_dir: str | Path,
    out_dir: str | Path,
    batch_size: int = 32,
    device: str | torch.device = "auto",
    amp: str = DEFAULT_AMP,
    flip_tta: bool = False,
    progress: bool = True,
    scales: Sequence[float] = (1.0,),
) -> dict[str, float]:
    """Label every shard in this process, then finish the dataset: `label_shards` as the only
    rank, then `finish_pseudo_labels`. Returns label_shards' figures and complete (1)."""
    stats = label_shards(
        checkpoint,
        unlabeled_dir,
        out_dir,
        batch_size,
        device,
        amp,
        flip_tta,
        scales,
        progress=progress,
    )
    amp_used = str(stats.pop("amp"))
    parameters = labelling_parameters(checkpoint, unlabeled_dir, flip_tta, scales, amp_used)
    return {**stats, **finish_pseudo_labels(unlabeled_dir, out_dir, parameters)}
