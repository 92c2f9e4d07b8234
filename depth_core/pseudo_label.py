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
from depth_core.device import pick_device
from depth_core.inference import check_scales, iterate_predictions
from depth_core.models import load_depth_model
from depth_core.training.precision import resolve_precision


def resolve_inference_amp(amp: str, device: torch.device) -> str:
    """Resolve "auto" to bf16 where training does (CUDA with bf16, CPUs with native bf16).

    Measured with benchmarks/bench_pseudo.py on this AVX512-BF16 CPU, teacher convnext_pico
    (features 64) on 96x128 images, batches of 32 under inference_mode: fp32 89.5 images/s,
    bf16 186.3 images/s (2.1x), largest deviation 0.4% of the disparity range.
    """
    if amp in ("fp16", "fp32", "bf16"):
        return amp
    return resolve_precision(amp, device)


def prepare_for_inference(model: torch.nn.Module, amp: str) -> torch.nn.Module:
    """Channels-last weights (faster convolutions in the DPT head) and, for bf16, weights
    stored in bf16 so autocast stops re-casting every weight on every batch. Buffers (the
    input normalisation constants) stay float32, and so do batch-norm layers, whose running
    statistics must match their affine parameters' dtype."""
    model = model.eval().to(memory_format=torch.channels_last)
    if amp == "bf16":
        for module in model.modules():
            if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                continue
            for param in module.parameters(recurse=False):
                param.data = param.data.to(torch.bfloat16)
    return model


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
    amp: str = "auto",
    flip_tta: bool = False,
    shard_indices: Iterable[int] | None = None,
    progress: bool = True,
    scales: Sequence[float] = (1.0,),
) -> dict[str, float]:
    """Label the (selected) shards of `unlabeled_dir` with the model at `checkpoint`: a
    depth-distill .safetensors file or a local Hugging Face depth-estimation folder.

    `flip_tta` and `scales` (input resize factors, averaged) are test-time augmentation: the
    labels can be better than one plain forward pass of the teacher.

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
    device = pick_device(device)
    model, _ = load_depth_model(checkpoint, map_location=device)
    sources = {shard_index(p): p for p in list_shards(unlabeled_dir)}
    selected = _select(sorted(sources), shard_indices, unlabeled_dir)
    amp = resolve_inference_amp(amp, device)
    model = prepare_for_inference(model, amp)
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
