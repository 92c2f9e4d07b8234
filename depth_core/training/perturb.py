"""Strong perturbations for pseudo-labelled student inputs, batched on tensors.

The colour jitter and blur are `depth_core.data.augment`'s (the one implementation of each);
this module adds CutMix and the per-region loss it needs.

Depth Anything (after UniMatch) makes the student's task harder than the teacher's: the teacher
labelled clean images, the student sees colour-jittered, blurred and CutMix-ed versions and must
still reproduce the clean labels. CutMix pastes a box from another image of the batch; the two
regions come from different scenes with different scale and shift, so the affine-invariant loss
is computed on each region separately and the two are weighted by their area.

Every random draw comes from an explicit generator, so a resumed run perturbs identically.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from depth_core.data.augment import color_jitter, gaussian_blur, uniform
from depth_core.training.config import PerturbConfig


@dataclass
class PerturbedBatch:
    image: torch.Tensor  # (B, 3, H, W) in [0, 1]
    target: torch.Tensor  # (B, H, W), the partner's labels inside the pasted box
    mask: torch.Tensor  # (B, H, W) bool
    pasted: torch.Tensor  # (B, H, W) bool, True where the pixel came from the CutMix partner


def cutmix_boxes(
    n: int, height: int, width: int, config: PerturbConfig, generator: torch.Generator
) -> torch.Tensor:
    """(n, H, W) bool: one random box per image drawn with probability cutmix_prob, else empty."""
    applied = torch.rand(n, generator=generator) < config.cutmix_prob
    area = uniform(n, *config.cutmix_area, generator) * height * width
    log_aspect = uniform(
        n, math.log(config.cutmix_aspect[0]), math.log(config.cutmix_aspect[1]), generator
    )
    aspect = torch.exp(log_aspect)  # box width / height
    box_h = torch.sqrt(area / aspect).round().clamp(1, height).long()
    box_w = torch.sqrt(area * aspect).round().clamp(1, width).long()
    top = (torch.rand(n, generator=generator) * (height - box_h + 1)).floor().long()
    left = (torch.rand(n, generator=generator) * (width - box_w + 1)).floor().long()
    rows = torch.arange(height)[None, :, None]
    cols = torch.arange(width)[None, None, :]
    inside = (
        (rows >= top[:, None, None])
        & (rows < (top + box_h)[:, None, None])
        & (cols >= left[:, None, None])
        & (cols < (left + box_w)[:, None, None])
    )
    return inside & applied[:, None, None]


def perturb_pseudo_batch(
    image: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    config: PerturbConfig,
    generator: torch.Generator,
) -> PerturbedBatch:
    """Colour jitter and blur every image independently, then CutMix with the next image."""
    if not config.enabled:
        return PerturbedBatch(image, target, mask, torch.zeros_like(mask))
    image = gaussian_blur(color_jitter(image, config, generator), config, generator)
    n, _, h, w = image.shape
    pasted = cutmix_boxes(n, h, w, config, generator).to(image.device)
    if n < 2:
        pasted.zero_()
    partner = torch.roll(torch.arange(n, device=image.device), shifts=-1)
    image = torch.where(pasted[:, None], image[partner], image)
    target = torch.where(pasted, target[partner], target)
    mask = torch.where(pasted, mask[partner], mask)
    return PerturbedBatch(image, target, mask, pasted)


LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, dict]]


def region_weighted_loss(
    loss_fn: LossFn,
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    pasted: torch.Tensor,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Affine-invariant loss on the original and the pasted region separately, area-weighted.

    `loss_fn(pred, target, mask) -> (total, parts)`. Each region gets its own scale/shift
    alignment; the weights are the regions' valid pixel counts over the batch.
    """
    own = mask & ~pasted
    other = mask & pasted
    n_own = own.sum()
    n_other = other.sum()
    total_own, parts_own = loss_fn(pred, target, own)
    if n_other == 0:
        return total_own, parts_own
    total_other, parts_other = loss_fn(pred, target, other)
    count = (n_own + n_other).clamp(min=1).to(total_own.dtype)
    w_own, w_other = n_own / count, n_other / count
    total = w_own * total_own + w_other * total_other
    parts = {k: w_own * parts_own[k] + w_other * parts_other[k] for k in parts_own}
    return total, parts
