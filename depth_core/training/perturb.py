"""Strong perturbations for pseudo-labelled student inputs, batched on tensors.

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
import torch.nn.functional as F

from depth_core.training.config import PerturbConfig

_GRAY = (0.299, 0.587, 0.114)


@dataclass
class PerturbedBatch:
    image: torch.Tensor  # (B, 3, H, W) in [0, 1]
    target: torch.Tensor  # (B, H, W), the partner's labels inside the pasted box
    mask: torch.Tensor  # (B, H, W) bool
    pasted: torch.Tensor  # (B, H, W) bool, True where the pixel came from the CutMix partner


def _uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=generator)


def _gray(image: torch.Tensor) -> torch.Tensor:
    weights = image.new_tensor(_GRAY).view(1, 3, 1, 1)
    return (image * weights).sum(dim=1, keepdim=True)


def color_jitter(
    image: torch.Tensor, config: PerturbConfig, generator: torch.Generator
) -> torch.Tensor:
    """Per-image brightness, contrast and saturation factors; images not drawn keep factor 1."""
    n = image.shape[0]
    applied = torch.rand(n, generator=generator) < config.jitter_p

    def factors(strength: float) -> torch.Tensor:
        f = _uniform(n, 1.0 - strength, 1.0 + strength, generator)
        return torch.where(applied, f, torch.ones_like(f)).to(image).view(n, 1, 1, 1)

    brightness, contrast, saturation = (
        factors(config.brightness),
        factors(config.contrast),
        factors(config.saturation),
    )
    out = (image * brightness).clamp(0.0, 1.0)
    mean = _gray(out).mean(dim=(2, 3), keepdim=True)
    out = ((out - mean) * contrast + mean).clamp(0.0, 1.0)
    gray = _gray(out)
    out = ((out - gray) * saturation + gray).clamp(0.0, 1.0)
    # Untouched images stay bit-identical (factor-1 arithmetic still rounds).
    return torch.where(applied.to(image.device).view(n, 1, 1, 1), out, image)


def gaussian_blur(
    image: torch.Tensor, config: PerturbConfig, generator: torch.Generator
) -> torch.Tensor:
    """Separable Gaussian blur with a per-image sigma, as one grouped convolution per axis."""
    n, c, h, w = image.shape
    applied = torch.rand(n, generator=generator) < config.blur_p
    sigma = _uniform(n, *config.blur_sigma, generator)
    if not applied.any():
        return image
    radius = min(math.ceil(3.0 * config.blur_sigma[1]), h - 1, w - 1)
    if radius < 1:
        return image
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-0.5 * (offsets[None, :] / sigma[:, None]) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    identity = (offsets == 0).float().expand(n, -1)
    kernel = torch.where(applied[:, None], kernel, identity)
    kernel = kernel.repeat_interleave(c, dim=0).to(image)  # (n*c, k)
    flat = image.reshape(1, n * c, h, w)
    flat = F.pad(flat, (radius, radius, 0, 0), mode="reflect")
    flat = F.conv2d(flat, kernel[:, None, None, :], groups=n * c)
    flat = F.pad(flat, (0, 0, radius, radius), mode="reflect")
    flat = F.conv2d(flat, kernel[:, None, :, None], groups=n * c)
    return flat.reshape(n, c, h, w)


def cutmix_boxes(
    n: int, height: int, width: int, config: PerturbConfig, generator: torch.Generator
) -> torch.Tensor:
    """(n, H, W) bool: one random box per image drawn with probability cutmix_p, else empty."""
    applied = torch.rand(n, generator=generator) < config.cutmix_p
    area = _uniform(n, *config.cutmix_area, generator) * height * width
    log_aspect = _uniform(
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
