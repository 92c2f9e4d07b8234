"""Evaluation of affine-invariant disparity against ground-truth depth.

Convention (MiDaS / Depth Anything): fit a least-squares scale and shift in disparity space
against ``1 / gt`` over valid pixels, clamp the aligned disparity at ``>= 1 / max_depth``, invert
to depth, then AbsRel and delta1 per image. Because that alignment is blind to the sign of the
scale, every evaluation also reports the fitted scale (negative = inverted depth) and the pair
accuracy of the *raw* prediction, which an inverted model fails.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from depth_core.losses import align_lstsq

DELTA1_THRESHOLD = 1.25
# Two pixels form an ordinal pair only if their depths differ by more than this ratio.
PAIR_MIN_RATIO = 1.05
# Candidates drawn per requested pair; pairs with too similar depths are discarded.
_PAIR_OVERSAMPLING = 4


def _check_maps(pred_disp: torch.Tensor, gt_depth: torch.Tensor, mask: torch.Tensor) -> None:
    for name, value in (("pred_disp", pred_disp), ("gt_depth", gt_depth), ("mask", mask)):
        if not isinstance(value, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    if pred_disp.ndim != 3:
        raise ValueError(f"pred_disp must have shape (B, H, W), got {tuple(pred_disp.shape)}")
    for name, value in (("gt_depth", gt_depth), ("mask", mask)):
        if value.shape != pred_disp.shape:
            raise ValueError(
                f"{name} shape {tuple(value.shape)} differs from pred_disp {tuple(pred_disp.shape)}"
            )
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a bool tensor, got {mask.dtype}")


@torch.no_grad()
def evaluate_disparity(
    pred_disp: torch.Tensor,
    gt_depth: torch.Tensor,
    mask: torch.Tensor,
    max_depth: float | None = None,
    n_pairs: int = 2000,
    generator: torch.Generator | None = None,
    min_depth: float | None = None,
) -> dict[str, torch.Tensor]:
    """Per-image metrics, each a float tensor ``(B,)``.

    ``abs_rel`` and ``delta1`` after least-squares alignment in disparity space (NaN for an
    image without valid pixels); ``scale`` is the fitted scale (``< 0``: the prediction is
    inverted); ``pair_accuracy`` is measured on the raw prediction over ``n_pairs`` random pairs
    of valid pixels whose depths differ by more than 5% (NaN when an image has none).
    ``max_depth`` bounds the aligned depth; by default each image's largest valid depth.
    ``min_depth`` bounds it from below (benchmarks clamp the aligned prediction to their depth
    range); by default it is unbounded. ``n_pairs`` 0 skips the pair sampling (NaN accuracy),
    which costs a sort of every image's pixels. ``generator`` seeds the pair sampling.
    """
    _check_maps(pred_disp, gt_depth, mask)
    if max_depth is not None and not max_depth > 0:
        raise ValueError(f"max_depth must be positive, got {max_depth}")
    if min_depth is not None and not min_depth > 0:
        raise ValueError(f"min_depth must be positive, got {min_depth}")
    if max_depth is not None and min_depth is not None and not max_depth > min_depth:
        raise ValueError(f"max_depth ({max_depth}) must exceed min_depth ({min_depth})")
    if n_pairs < 0:
        raise ValueError(f"n_pairs must be >= 0, got {n_pairs}")

    pred = torch.nan_to_num(pred_disp.detach().float())
    gt = gt_depth.detach().float()
    valid = mask & torch.isfinite(gt) & (gt > 0)
    safe_gt = torch.where(valid, gt, 1.0)
    gt_disp = torch.where(valid, 1.0 / safe_gt, 0.0)

    scale, shift = align_lstsq(pred, gt_disp, valid)
    aligned = scale[:, None, None] * pred + shift[:, None, None]
    if max_depth is None:
        far = torch.where(valid, gt, 0.0).amax(dim=(1, 2))
    else:
        far = torch.full_like(scale, float(max_depth))
    min_disp = 1.0 / torch.where(far > 0, far, 1.0)
    aligned = torch.maximum(aligned, min_disp[:, None, None])
    if min_depth is not None:
        aligned = aligned.clamp(max=1.0 / min_depth)
    depth = 1.0 / aligned

    count = valid.sum(dim=(1, 2)).float()
    rel_error = torch.where(valid, (depth - safe_gt).abs() / safe_gt, 0.0)
    ratio = torch.maximum(depth / safe_gt, safe_gt / depth)
    within = valid & (ratio < DELTA1_THRESHOLD)
    nan = torch.full_like(count, float("nan"))
    has_pixels = count > 0
    abs_rel = torch.where(has_pixels, rel_error.sum(dim=(1, 2)) / count.clamp(min=1), nan)
    delta1 = torch.where(has_pixels, within.sum(dim=(1, 2)).float() / count.clamp(min=1), nan)

    return {
        "abs_rel": abs_rel,
        "delta1": delta1,
        "pair_accuracy": (
            _sampled_pair_accuracy(pred, gt, valid, n_pairs, generator)
            if n_pairs
            else torch.full_like(count, float("nan"))
        ),
        "scale": scale,
    }


def _sampled_pair_accuracy(pred, gt, valid, n_pairs, generator):
    """Ordinal accuracy of the raw prediction on random pairs of valid pixels, per image.

    Draws ``_PAIR_OVERSAMPLING * n_pairs`` candidate pairs uniformly among each image's valid
    pixels (all images at once), keeps the first ``n_pairs`` whose depths differ by more than
    ``PAIR_MIN_RATIO``, and counts the pairs where the nearer pixel has the larger disparity.
    """
    batch = pred.shape[0]
    flat_valid = valid.reshape(batch, -1)
    count = flat_valid.sum(dim=1)
    # valid pixel indices first, in order, so a uniform rank below `count` picks a valid pixel
    valid_first = torch.argsort((~flat_valid).to(torch.uint8), dim=1, stable=True)
    draws = _PAIR_OVERSAMPLING * n_pairs
    sample_device = generator.device if generator is not None else torch.device("cpu")
    uniform = torch.rand(2, batch, draws, generator=generator, device=sample_device).to(pred.device)
    ranks = (uniform * count[None, :, None]).long().clamp(max=flat_valid.shape[1] - 1)
    index = torch.stack([valid_first.gather(1, ranks[0]), valid_first.gather(1, ranks[1])])

    flat_gt = gt.reshape(batch, -1)
    flat_pred = pred.reshape(batch, -1)
    depth_a, depth_b = flat_gt.gather(1, index[0]), flat_gt.gather(1, index[1])
    disp_a, disp_b = flat_pred.gather(1, index[0]), flat_pred.gather(1, index[1])
    ordinal = torch.maximum(depth_a, depth_b) > PAIR_MIN_RATIO * torch.minimum(depth_a, depth_b)
    ordinal &= (count > 0)[:, None]
    used = ordinal & (torch.cumsum(ordinal, dim=1) <= n_pairs)
    correct = torch.where(depth_a < depth_b, disp_a > disp_b, disp_b > disp_a) & used
    n_used = used.sum(dim=1)
    accuracy = correct.sum(dim=1).float() / n_used.clamp(min=1)
    return torch.where(n_used > 0, accuracy, torch.full_like(accuracy, float("nan")))


@torch.no_grad()
def pair_accuracy(
    pred_disp: torch.Tensor,
    points1: torch.Tensor,
    points2: torch.Tensor,
    closer: torch.Tensor,
    batch_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """DA-2K style ordinal accuracy: fraction of pairs where the point with the larger
    predicted disparity is the annotated closer one (ties count as wrong). 0-dim float tensor,
    NaN without pairs.

    ``pred_disp`` is ``(H, W)``, or ``(B, H, W)`` together with ``batch_index`` ``(N,)`` naming
    each pair's image. ``points1``/``points2`` are ``(N, 2)`` integer ``[row, col]``; ``closer``
    ``(N,)`` holds 1 or 2.
    """
    if not isinstance(pred_disp, torch.Tensor) or pred_disp.ndim not in (2, 3):
        raise ValueError("pred_disp must be a (H, W) or (B, H, W) tensor")
    points1, points2 = torch.as_tensor(points1), torch.as_tensor(points2)
    closer = torch.as_tensor(closer)
    if closer.ndim != 1:
        raise ValueError(f"closer must have shape (N,), got {tuple(closer.shape)}")
    n = closer.shape[0]
    height, width = pred_disp.shape[-2:]
    for name, points in (("points1", points1), ("points2", points2)):
        if points.shape != (n, 2):
            raise ValueError(f"{name} must have shape (N, 2) = ({n}, 2), got {tuple(points.shape)}")
        if points.is_floating_point():
            raise TypeError(f"{name} must hold integer [row, col] coordinates, got {points.dtype}")
        rows, cols = points[:, 0], points[:, 1]
        if ((rows < 0) | (rows >= height) | (cols < 0) | (cols >= width)).any():
            raise ValueError(f"{name} has coordinates outside the {height}x{width} map")
    if not ((closer == 1) | (closer == 2)).all():
        raise ValueError("closer must hold only 1 (points1 is closer) or 2 (points2 is closer)")

    maps = pred_disp if pred_disp.ndim == 3 else pred_disp[None]
    if pred_disp.ndim == 3:
        if batch_index is None:
            raise ValueError("batch_index (N,) is required when pred_disp is (B, H, W)")
        images = torch.as_tensor(batch_index).long()
        if images.shape != (n,) or ((images < 0) | (images >= maps.shape[0])).any():
            raise ValueError(f"batch_index must be (N,) with values in [0, {maps.shape[0]})")
    else:
        images = torch.zeros(n, dtype=torch.long)
    if n == 0:
        return torch.tensor(float("nan"))

    device = maps.device
    images, points1, points2 = (
        images.to(device),
        points1.long().to(device),
        points2.long().to(device),
    )
    disp1 = maps[images, points1[:, 0], points1[:, 1]].float()
    disp2 = maps[images, points2[:, 0], points2[:, 1]].float()
    correct = torch.where(closer.to(device) == 1, disp1 > disp2, disp2 > disp1)
    return correct.float().mean()


def summarize(
    per_image: Sequence[Mapping[str, torch.Tensor]] | Mapping[str, torch.Tensor],
) -> dict[str, float]:
    """Means over all images of each per-image metric, skipping NaN (an image where a metric is
    undefined), plus ``inverted_fraction``: the fraction of images with ``scale < 0``."""
    batches = [per_image] if isinstance(per_image, Mapping) else list(per_image)
    if not batches:
        raise ValueError("summarize needs at least one dict of per-image metrics")
    keys = list(batches[0])
    for batch in batches[1:]:
        if set(batch) != set(keys):
            raise ValueError(
                f"per-image dicts have different keys: {sorted(batch)} vs {sorted(keys)}"
            )
    summary: dict[str, float] = {}
    for key in keys:
        values = torch.cat(
            [torch.as_tensor(b[key], dtype=torch.float64).reshape(-1).cpu() for b in batches]
        )
        finite = values[~torch.isnan(values)]
        summary[key] = float(finite.mean()) if finite.numel() else math.nan
    if "scale" in summary:
        scales = torch.cat(
            [torch.as_tensor(b["scale"], dtype=torch.float64).reshape(-1).cpu() for b in batches]
        )
        summary["inverted_fraction"] = (
            float((scales < 0).double().mean()) if scales.numel() else math.nan
        )
    return summary


def row_prior_disparity(height: int, width: int) -> torch.Tensor:
    """The trivial baseline "lower in the image is nearer": disparity = row index + 1, float32
    ``(H, W)``. Exact (up to scale and shift) for a flat ground plane seen by a level camera."""
    for name, value in (("height", height), ("width", width)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    rows = torch.arange(1, height + 1, dtype=torch.float32)
    return rows[:, None].expand(height, width).contiguous()
