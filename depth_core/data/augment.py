"""Seeded augmentations: the one colour jitter and blur, and per-sample geometry.

`color_jitter` and `gaussian_blur` work on batches with per-image parameters drawn from an
explicit generator. The students' strong perturbations (`depth_core.training.perturb`) call
them on whole batches; `build_augment` calls them on one sample at a time, after the geometric
transforms (torchvision's `transforms.v2` functionals: crop, resize, flip), which move image,
disparity and mask together and resample disparity and mask with exact nearest neighbours so
an invalid pixel never blends into a valid one. Photometric transforms touch the image only.

A sample is the dict streamed by `depth_core.data.dataset`: `image` float (3, H, W) in [0, 1],
`disparity` float (H, W), `mask` bool (H, W). Its randomness comes from the sample's `"seed"`
when the dataset supplies one, so a resumed or re-run epoch gets the same augmentations
whatever the worker layout.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

Sample = dict[str, Any]

_GRAY = (0.299, 0.587, 0.114)
_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64
)


class PhotometricConfig(BaseModel):
    """Colour jitter and blur: probabilities per image and strengths (0 disables one)."""

    model_config = ConfigDict(extra="forbid")

    jitter_prob: float = Field(0.0, ge=0.0, le=1.0)
    brightness: float = Field(0.0, ge=0.0, lt=1.0, description="factor drawn from [1-b, 1+b]")
    contrast: float = Field(0.0, ge=0.0, lt=1.0)
    saturation: float = Field(0.0, ge=0.0, lt=1.0)
    hue: float = Field(0.0, ge=0.0, le=0.5, description="rotation of the chroma plane, in turns")
    blur_prob: float = Field(0.0, ge=0.0, le=1.0)
    blur_sigma: tuple[float, float] = Field(
        (0.1, 2.0), description="Gaussian sigma range in pixels"
    )

    @model_validator(mode="after")
    def _sigma_range(self):
        lo, hi = self.blur_sigma
        if not 0.0 < lo <= hi:
            raise ValueError(f"blur_sigma must satisfy 0 < low <= high, got {self.blur_sigma}")
        return self


class AugmentConfig(PhotometricConfig):
    """Every training sample: crop / resize to one size, flip, then optional colour and blur."""

    size: tuple[int, int] | None = Field(
        None, description="output (height, width); None keeps the input size"
    )
    hflip_prob: float = Field(0.5, ge=0.0, le=1.0)
    crop_prob: float = Field(0.0, ge=0.0, le=1.0)
    crop_scale: tuple[float, float] = Field(
        (0.5, 1.0),
        description="crop area as a fraction of the largest window with the output aspect",
    )

    @model_validator(mode="after")
    def _geometry_ranges(self):
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        if self.size is not None and min(self.size) <= 0:
            raise ValueError(f"size must be positive, got {self.size}")
        return self


# ------------------------------------------------------------------------------ photometric


def uniform(n: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    """`n` draws from [low, high) of an explicit generator (every random draw here is seeded)."""
    return low + (high - low) * torch.rand(n, generator=generator)


def _gray(image: torch.Tensor) -> torch.Tensor:
    weights = image.new_tensor(_GRAY).view(1, 3, 1, 1)
    return (image * weights).sum(dim=1, keepdim=True)


def _hue_matrices(turns: torch.Tensor) -> torch.Tensor:
    """(n, 3, 3) RGB matrices rotating the YIQ chroma plane: cheap and close to an HSV shift."""
    angle = 2.0 * math.pi * turns.double()
    cos, sin = torch.cos(angle), torch.sin(angle)
    rotation = torch.zeros(len(turns), 3, 3, dtype=torch.float64)
    rotation[:, 0, 0] = 1.0
    rotation[:, 1, 1], rotation[:, 1, 2] = cos, -sin
    rotation[:, 2, 1], rotation[:, 2, 2] = sin, cos
    return torch.linalg.inv(_RGB_TO_YIQ) @ rotation @ _RGB_TO_YIQ


def color_jitter(
    image: torch.Tensor, config: PhotometricConfig, generator: torch.Generator
) -> torch.Tensor:
    """Per-image brightness, contrast, saturation (and hue when set) of a (B, 3, H, W) batch;
    images not drawn (probability `jitter_prob`) keep their exact values."""
    n = image.shape[0]
    applied = torch.rand(n, generator=generator) < config.jitter_prob

    def factors(strength: float) -> torch.Tensor:
        f = uniform(n, 1.0 - strength, 1.0 + strength, generator)
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
    if config.hue > 0:  # drawn only when used, so hue-free runs keep their random stream
        turns = torch.where(applied, uniform(n, -config.hue, config.hue, generator), 0.0)
        matrices = _hue_matrices(turns).to(out)
        out = torch.einsum("nij,njhw->nihw", matrices, out).clamp(0.0, 1.0)
    return torch.where(applied.to(image.device).view(n, 1, 1, 1), out, image)


def gaussian_blur(
    image: torch.Tensor, config: PhotometricConfig, generator: torch.Generator
) -> torch.Tensor:
    """Separable Gaussian blur of a (B, C, H, W) batch with a per-image sigma (probability
    `blur_prob`), as one grouped convolution per axis with reflected borders."""
    n, c, h, w = image.shape
    applied = torch.rand(n, generator=generator) < config.blur_prob
    sigma = uniform(n, *config.blur_sigma, generator)
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


# ------------------------------------------------------------------------------ geometry


def _largest_window(height: int, width: int, out_h: int, out_w: int) -> tuple[int, int]:
    aspect = out_w / out_h
    if width / height > aspect:
        return height, max(1, min(width, round(height * aspect)))
    return max(1, min(height, round(width / aspect))), width


def _crop_window(
    height: int, width: int, config: AugmentConfig, generator: torch.Generator
) -> tuple[int, int, int, int]:
    """(top, left, crop_h, crop_w): with probability `crop_prob` a random fraction of the
    largest window with the output's aspect, else that window centred."""
    out_h, out_w = config.size or (height, width)
    max_h, max_w = _largest_window(height, width, out_h, out_w)
    if config.crop_prob > 0 and torch.rand((), generator=generator) < config.crop_prob:
        side = math.sqrt(float(uniform(1, *config.crop_scale, generator)))
        crop_h, crop_w = max(1, round(max_h * side)), max(1, round(max_w * side))
        top = int(torch.randint(0, height - crop_h + 1, (), generator=generator))
        left = int(torch.randint(0, width - crop_w + 1, (), generator=generator))
        return top, left, crop_h, crop_w
    return (height - max_h) // 2, (width - max_w) // 2, max_h, max_w


def resized_crop(sample: Sample, window: tuple[int, int, int, int], size: tuple[int, int]):
    """Crop `window` and resize to `size`: image bilinear (antialiased), disparity and mask
    exact nearest, and disparity zeroed wherever the mask is False."""
    top, left, crop_h, crop_w = window
    out = dict(sample)
    image = TF.resized_crop(
        sample["image"], top, left, crop_h, crop_w, list(size), InterpolationMode.BILINEAR
    )
    out["image"] = image.clamp(0.0, 1.0)
    nearest = InterpolationMode.NEAREST_EXACT
    if "disparity" in sample:
        disparity = sample["disparity"][None]
        out["disparity"] = TF.resized_crop(
            disparity, top, left, crop_h, crop_w, list(size), nearest
        )[0]
    if "mask" in sample:
        mask = sample["mask"][None].to(torch.uint8)
        out["mask"] = TF.resized_crop(mask, top, left, crop_h, crop_w, list(size), nearest)[
            0
        ].bool()
    if "disparity" in out and "mask" in out:
        out["disparity"] = torch.where(out["mask"], out["disparity"], 0.0)
    return out


def horizontal_flip(sample: Sample) -> Sample:
    out = dict(sample)
    for key in ("image", "disparity", "mask"):
        if key in out:
            out[key] = TF.horizontal_flip(out[key])
    return out


# ------------------------------------------------------------------------------ per sample


class SampleAugment:
    """Geometry (crop / resize, flip), then colour jitter and blur, one generator per sample.

    The generator is seeded from the sample's `"seed"` (set by the streaming datasets); a
    sample without one draws from this object's own generator, seeded by `seed`.
    """

    def __init__(self, config: AugmentConfig, seed: int = 0) -> None:
        self.config = config
        self._own = torch.Generator().manual_seed(seed)

    def _generator(self, sample: Sample) -> torch.Generator:
        if "seed" in sample:
            return torch.Generator().manual_seed(int(sample["seed"]))
        return self._own

    def __call__(self, sample: Sample) -> Sample:
        config, generator = self.config, self._generator(sample)
        height, width = sample["image"].shape[-2:]
        size = config.size or (height, width)
        window = _crop_window(height, width, config, generator)
        if window != (0, 0, height, width) or tuple(size) != (height, width):
            sample = resized_crop(sample, window, size)
        if config.hflip_prob > 0 and torch.rand((), generator=generator) < config.hflip_prob:
            sample = horizontal_flip(sample)
        if config.jitter_prob > 0 or config.blur_prob > 0:
            image = sample["image"][None]
            if config.jitter_prob > 0:
                image = color_jitter(image, config, generator)
            if config.blur_prob > 0:
                image = gaussian_blur(image, config, generator)
            sample = {**sample, "image": image[0]}
        return sample


def build_augment(config: AugmentConfig, seed: int = 0) -> SampleAugment:
    return SampleAugment(config, seed=seed)
