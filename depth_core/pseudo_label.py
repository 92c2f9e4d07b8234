"""Pseudo-labelling: the teacher's disparity for every unlabeled image, shard by shard.

Pseudo shard `k` labels unlabeled shard `k` one-to-one (same ids, float16 disparity), so the
students' PseudoLabelDataset can stream both side by side. Each shard is predicted in batches
under torch.inference_mode (and bf16 autocast where it pays), written atomically, and skipped
on a re-run when it is already there with the right ids: an interrupted run resumes, memory
stays one shard whatever the dataset size, and disjoint `shard_indices` let several processes
or machines label one dataset in parallel. summary.json (what marks a dataset complete) is
written by whichever call finds every shard done.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

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


def _select(
    available: list[int], shard_indices: Iterable[int] | None, unlabeled_dir: Path
) -> list[int]:
    if shard_indices is None:
        return available
    chosen = sorted({int(i) for i in shard_indices})
    missing = [i for i in chosen if i not in set(available)]
    if missing:
        raise ValueError(f"shard_indices {missing[:10]} are not shards of {unlabeled_dir}")
    return chosen


def generate_pseudo_labels(
    checkpoint: str | Path,
    unlabeled_dir: str | Path,
    out_dir: str | Path,
    batch_size: int = 32,
    device: str | torch.device = "auto",
    amp: str = DEFAULT_AMP,
    flip_tta: bool = False,
    shard_indices: Iterable[int] | None = None,
    progress: bool = True,
    scales: Sequence[float] = (1.0,),
) -> dict[str, float]:
    """Label the (selected) shards of `unlabeled_dir` with the model at `checkpoint`: a
    depth-distill .safetensors file or a local Hugging Face depth-estimation folder.

    `flip_tta` and `scales` (input resize factors, averaged) are test-time augmentation: the
    labels can be better than one plain forward pass of the teacher. The model is loaded and
    run as `depth-distill predict` runs it (`depth_core.inference`), in `amp` ("auto": bf16
    where native).

    Returns n_images (labelled now), n_shards_written, n_shards_skipped, nan_count (non-finite
    predicted pixels, stored as-is and masked by the dataset), images_per_second, bf16 (1/0)
    and complete (1 when every shard exists and summary.json was written).
    """
    unlabeled_dir, out_dir = Path(unlabeled_dir), Path(out_dir)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    scales = check_scales(scales)
    if not is_dataset_complete(unlabeled_dir):
        raise FileNotFoundError(f"{unlabeled_dir} is not a complete dataset (no summary.json)")
    loaded = load_for_inference(checkpoint, device, amp)
    model, device, amp = loaded.model, loaded.device, loaded.amp
    sources = {shard_index(p): p for p in list_shards(unlabeled_dir)}
    selected = _select(sorted(sources), shard_indices, unlabeled_dir)
    clean_temp_files(out_dir, selected)
    if shard_indices is None:  # a full run also drops shards of images that no longer exist
        for stale in list_shards(out_dir):
            if shard_index(stale) not in sources:
                stale.unlink()

    written = skipped = n_images = nan_count = 0
    seconds = 0.0
    for index in tqdm(selected, desc="pseudo-labels", unit="shard", disable=not progress):
        arrays = read_shard(sources[index], ["id", "image"])
        target = shard_path(out_dir, index)
        if is_complete(target) and _has_ids(target, arrays["id"]):
            skipped += 1
            continue
        start = time.perf_counter()
        disparity = label_images(model, arrays["image"], batch_size, device, amp, flip_tta, scales)
        seconds += time.perf_counter() - start
        stored = to_float16_labels(disparity)
        nan_count += int((~np.isfinite(stored)).sum())
        write_shard(target, {"id": arrays["id"], "disparity": stored})
        written += 1
        n_images += len(stored)

    complete = all(shard_path(out_dir, i).exists() for i in sources)
    if complete and (written or not is_dataset_complete(out_dir)):
        finalize_dataset(
            out_dir,
            parameters={
                "checkpoint": str(checkpoint),
                "unlabeled_dir": str(unlabeled_dir),
                "flip_tta": flip_tta,
                "scales": list(scales),
                "amp": amp,
            },
        )
    return {
        "n_images": float(n_images),
        "n_shards_written": float(written),
        "n_shards_skipped": float(skipped),
        "nan_count": float(nan_count),
        "images_per_second": n_images / seconds if seconds > 0 else 0.0,
        "bf16": float(amp == "bf16"),
        "complete": float(complete),
    }
