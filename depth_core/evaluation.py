"""Evaluate a depth model (or the row-prior baseline) on a held-out RGB-D set.

The same function scores the teacher and every student, on the synthetic validation split,
the target domain and real RGB-D folders, so all their numbers are comparable. Metrics follow
the project's evaluation convention (depth_core.metrics): least-squares alignment in disparity
space, AbsRel and delta1 per image averaged over images, pair accuracy on the raw (unaligned)
prediction, and the fraction of images whose fitted scale is negative (inverted depth), which
exposes the sign blindness of least-squares alignment.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from depth_core import metrics
from depth_core.data.dataset import ShardDataset
from depth_core.inference import DEFAULT_AMP, predict_disparity

METRIC_KEYS = ("abs_rel", "delta1", "pair_accuracy", "inverted_fraction", "n_images")

# Ground truth that cannot define a scale-and-shift alignment is skipped, not scored: with a
# handful of valid pixels (or one depth value) any prediction aligns "perfectly".
MIN_VALID_PIXELS = 32
CONSTANT_DEPTH_RTOL = 1e-6


def ground_truth_problem(depth, mask) -> str | None:
    """Why this ground truth cannot score a prediction (too few valid pixels, constant depth),
    or None when it can. Arrays or tensors of one image, (H, W)."""
    depth = torch.as_tensor(np.asarray(depth, dtype=np.float32))
    valid = torch.as_tensor(np.asarray(mask, dtype=bool)) & (depth > 0) & torch.isfinite(depth)
    n_valid = int(valid.sum())
    if n_valid < MIN_VALID_PIXELS:
        return f"{n_valid} valid depth pixels, fewer than the minimum {MIN_VALID_PIXELS}"
    values = depth[valid]
    if float(values.max() - values.min()) <= CONSTANT_DEPTH_RTOL * float(values.max()):
        return f"constant depth ({float(values.max()):.6g} on every valid pixel)"
    return None


def _usable_images(batch: dict[str, torch.Tensor], first: int, skipped: list | None):
    """The batch without images whose ground truth is unusable; each one noted in `skipped`."""
    keep = []
    for i, (depth, mask) in enumerate(zip(batch["depth"], batch["mask"])):
        problem = ground_truth_problem(depth.numpy(), mask.numpy())
        if problem is None:
            keep.append(i)
        elif skipped is not None:
            skipped.append({"index": first + i, "reason": problem})
    return {k: v[keep] for k, v in batch.items()}


def _batches(
    dataset_dir: Path, batch_size: int, max_images: int | None, skipped: list | None = None
) -> Iterator[dict[str, torch.Tensor]]:
    """Fixed-order batches of image, GT depth and mask (depth = 1 / disparity on valid pixels),
    without the images whose ground truth is unusable (noted, by position, in `skipped`)."""
    dataset = ShardDataset(dataset_dir, shuffle=False, require_depth=True)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, num_workers=0)
    seen = 0
    for batch in loader:
        if max_images is not None:
            if seen >= max_images:
                return
            batch = {k: v[: max_images - seen] for k, v in batch.items()}
        first, seen = seen, seen + len(batch["image"])
        mask = batch["mask"]
        disparity = batch["disparity"]
        depth = torch.where(
            mask, 1.0 / torch.where(mask, disparity, torch.ones_like(disparity)), 0.0
        )
        usable = _usable_images(
            {"image": batch["image"], "depth": depth, "mask": mask}, first, skipped
        )
        if len(usable["image"]):
            yield usable


def _finish(
    per_batch: list[dict[str, torch.Tensor]], n_images: int, where: str
) -> dict[str, float]:
    if n_images == 0:
        raise ValueError(f"{where}: no images to evaluate")
    summary = {k: float(v) for k, v in metrics.summarize(per_batch).items()}
    out = {key: summary[key] for key in METRIC_KEYS[:-1]}
    out["n_images"] = float(n_images)
    return out


def _pair_generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _as_uint8_images(batch: torch.Tensor) -> list[np.ndarray]:
    """(B, 3, H, W) floats in [0, 1] read from uint8 shards -> the uint8 (H, W, 3) pictures
    (exact: each value is k / 255)."""
    pixels = (batch * 255.0).round().clamp_(0, 255).to(torch.uint8)
    return list(pixels.permute(0, 2, 3, 1).numpy())


def evaluate_model(
    model: nn.Module,
    dataset_dir: str | Path,
    batch_size: int = 16,
    device: str | torch.device | None = None,
    amp: str | torch.dtype | None = DEFAULT_AMP,
    max_images: int | None = None,
    max_depth: float | None = None,
    seed: int = 0,
    skipped: list | None = None,
    flip_tta: bool = False,
    scales: Sequence[float] = (1.0,),
) -> dict[str, float]:
    """Metrics of `model` on a labeled dataset directory: abs_rel, delta1, pair_accuracy,
    inverted_fraction, n_images. Images are predicted through `depth_core.inference`, as
    `depth-distill predict` predicts them (`flip_tta` and `scales` as the pseudo-label stage
    labels them, so its labels can be scored on held-out ground truth). Pair sampling is
    seeded so repeated calls are comparable. Images with unusable ground truth are not scored
    nor counted (listed in `skipped`)."""
    dataset_dir = Path(dataset_dir)
    generator = _pair_generator(seed)
    per_batch, n_images = [], 0
    for batch in _batches(dataset_dir, batch_size, max_images, skipped):
        images = _as_uint8_images(batch["image"])
        pred = predict_disparity(
            model, images, len(images), device=device, flip_tta=flip_tta, amp=amp, scales=scales
        )
        per_batch.append(
            metrics.evaluate_disparity(
                torch.from_numpy(np.stack(pred)),
                batch["depth"],
                batch["mask"],
                max_depth=max_depth,
                generator=generator,
            )
        )
        n_images += len(pred)
    return _finish(per_batch, n_images, str(dataset_dir))


def evaluate_sets(
    model: nn.Module,
    sets: dict[str, str | Path],
    batch_size: int,
    device: str | torch.device | None = None,
    max_images: int | None = None,
    seed: int = 0,
) -> dict[str, float]:
    """``val/<set>/<metric>`` for each named set, always in fp32: the keys and numbers every
    teacher and student reports, trained here or not, comparable with `depth-distill evaluate`."""
    values: dict[str, float] = {}
    for name, path in sets.items():
        result = evaluate_model(
            model,
            path,
            batch_size=batch_size,
            device=device,
            amp="fp32",
            max_images=max_images,
            seed=seed,
        )
        values.update({f"val/{name}/{k}": v for k, v in result.items()})
    return values


def row_prior_like(depth: torch.Tensor) -> torch.Tensor:
    """The baseline prediction for a (B, H, W) batch: disparity grows with the image row."""
    b, h, w = depth.shape
    prior = torch.as_tensor(metrics.row_prior_disparity(h, w), dtype=torch.float32)
    return prior.expand(b, h, w).clone()


def evaluate_row_prior(
    dataset_dir: str | Path,
    batch_size: int = 64,
    max_images: int | None = None,
    max_depth: float | None = None,
    seed: int = 0,
    skipped: list | None = None,
) -> dict[str, float]:
    """The trivial 'lower in the image is nearer' baseline on the same data and pairs."""
    dataset_dir = Path(dataset_dir)
    generator = _pair_generator(seed)
    per_batch, n_images = [], 0
    for batch in _batches(dataset_dir, batch_size, max_images, skipped):
        pred = row_prior_like(batch["depth"])
        per_batch.append(
            metrics.evaluate_disparity(
                pred, batch["depth"], batch["mask"], max_depth=max_depth, generator=generator
            )
        )
        n_images += len(pred)
    return _finish(per_batch, n_images, str(dataset_dir))


class MetricAccumulator:
    """Per-image metrics of predictions of any sizes, added one image at a time.

    Each accumulator draws its evaluation pairs from its own seeded generator, so two
    accumulators fed the same images in the same order score the same pairs.
    """

    def __init__(self, max_depth: float | None = None, seed: int = 0) -> None:
        self.max_depth = max_depth
        self.generator = _pair_generator(seed)
        self.per_image: list[dict[str, torch.Tensor]] = []
        self.skipped: list[str] = []  # the reason for each image not scored

    def add(self, pred: np.ndarray, depth: np.ndarray, mask: np.ndarray) -> str | None:
        """Score one image; returns why it was skipped instead, if its ground truth is unusable."""
        if np.shape(pred) != np.shape(depth):
            raise ValueError(
                f"prediction {np.shape(pred)} and depth {np.shape(depth)} differ in size"
            )
        problem = ground_truth_problem(depth, mask)
        if problem is not None:
            self.skipped.append(problem)
            return problem
        self.per_image.append(
            metrics.evaluate_disparity(
                torch.as_tensor(np.asarray(pred, dtype=np.float32))[None],
                torch.as_tensor(np.asarray(depth, dtype=np.float32))[None],
                torch.as_tensor(np.asarray(mask, dtype=bool))[None],
                max_depth=self.max_depth,
                generator=self.generator,
            )
        )
        return None

    def result(self) -> dict[str, float]:
        return _finish(self.per_image, len(self.per_image), "evaluation")
