"""Seeded, composable augmentations on training samples.

A sample is the dict streamed by `depth_core.data.dataset`: `image` float (3, H, W) in
[0, 1], `disparity` float (H, W), `mask` bool (H, W). Geometric transforms move image,
disparity and mask together and resample disparity with nearest neighbours so an invalid
pixel never blends into a valid one; photometric transforms touch the image only.
Randomness comes from the sample's `"seed"` when the dataset supplies one, so a resumed or
re-run epoch gets the same augmentations regardless of worker layout.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

Sample = dict[str, Any]


class AugmentConfig(BaseModel):
    """Probabilities and strengths of each augmentation (0 disables one)."""

    model_config = ConfigDict(extra="forbid")

    size: tuple[int, int] | None = Field(
        None, description="output (height, width); None keeps the input size"
    )
    hflip_prob: float = Field(0.5, ge=0.0, le=1.0)
    crop_prob: float = Field(0.0, ge=0.0, le=1.0)
    crop_scale: tuple[float, float] = Field(
        (0.5, 1.0),
        description="crop area as a fraction of the largest window with the output aspect",
    )
    jitter_prob: float = Field(0.0, ge=0.0, le=1.0)
    brightness: float = Field(0.0, ge=0.0, le=1.0, description="factor drawn from [1-b, 1+b]")
    contrast: float = Field(0.0, ge=0.0, le=1.0)
    saturation: float = Field(0.0, ge=0.0, le=1.0)
    hue: float = Field(0.0, ge=0.0, le=0.5, description="rotation of the chroma plane, in turns")
    blur_prob: float = Field(0.0, ge=0.0, le=1.0)
    blur_sigma: tuple[float, float] = Field(
        (0.1, 2.0), description="Gaussian sigma range in pixels"
    )

    @model_validator(mode="after")
    def _check_ranges(self) -> AugmentConfig:
        lo, hi = self.crop_scale
        if not 0.0 < lo <= hi <= 1.0:
            raise ValueError(f"crop_scale must satisfy 0 < low <= high <= 1, got {self.crop_scale}")
        lo, hi = self.blur_sigma
        if not 0.0 < lo <= hi:
            raise ValueError(f"blur_sigma must satisfy 0 < low <= high, got {self.blur_sigma}")
        if self.size is not None and min(self.size) <= 0:
            raise ValueError(f"size must be positive, got {self.size}")
        return self

    @classmethod
    def strong(cls, **overrides: Any) -> AugmentConfig:
        """The strong perturbations students see on pseudo-labelled images (colour + blur)."""
        values = {
            "jitter_prob": 0.8,
            "brightness": 0.4,
            "contrast": 0.4,
            "saturation": 0.4,
            "hue": 0.1,
            "blur_prob": 0.5,
        }
        values.update(overrides)
        return cls(**values)


class SampleTransform(Protocol):
    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample: ...


class HorizontalFlip:
    """Mirror image, disparity and mask together with probability `p`."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.p:
            return sample
        out = dict(sample)
        for key in ("image", "disparity", "mask"):
            if key in out:
                out[key] = torch.flip(out[key], dims=(-1,))
        return out


class RandomResizedCrop:
    """Crop a window with the output's aspect ratio and resize it to the output size.

    With probability `p` the window covers a random fraction (`scale`, by area) of the
    largest such window at a random place; otherwise it is that largest window, centred, so
    the output always has `size`. Disparity and mask are resampled nearest-neighbour.
    """

    def __init__(
        self, size: tuple[int, int] | None, scale: tuple[float, float] = (0.5, 1.0), p: float = 1.0
    ) -> None:
        self.size = size
        self.scale = scale
        self.p = p

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        height, width = sample["image"].shape[-2:]
        out_h, out_w = self.size or (height, width)
        max_h, max_w = _largest_window(height, width, out_h, out_w)
        if rng.random() < self.p:
            side = math.sqrt(rng.uniform(*self.scale))
            crop_h, crop_w = max(1, round(max_h * side)), max(1, round(max_w * side))
            top = int(rng.integers(0, height - crop_h + 1))
            left = int(rng.integers(0, width - crop_w + 1))
        else:
            crop_h, crop_w = max_h, max_w
            top, left = (height - crop_h) // 2, (width - crop_w) // 2
        if (crop_h, crop_w, out_h, out_w) == (height, width, height, width):
            return sample
        out = dict(sample)
        image = sample["image"][..., top : top + crop_h, left : left + crop_w]
        out["image"] = _resize_bilinear(image, out_h, out_w)
        rows = top + _nearest(crop_h, out_h)
        cols = left + _nearest(crop_w, out_w)
        for key in ("disparity", "mask"):
            if key in sample:
                out[key] = sample[key][..., rows[:, None], cols[None, :]]
        if "disparity" in out and "mask" in out:
            out["disparity"] = torch.where(
                out["mask"], out["disparity"], torch.zeros_like(out["disparity"])
            )
        return out


def _largest_window(height: int, width: int, out_h: int, out_w: int) -> tuple[int, int]:
    aspect = out_w / out_h
    if width / height > aspect:
        return height, max(1, min(width, round(height * aspect)))
    return max(1, min(height, round(width / aspect))), width


def _nearest(source: int, target: int) -> torch.Tensor:
    centres = (torch.arange(target, dtype=torch.float64) + 0.5) * (source / target)
    return torch.clamp(centres.floor().long(), 0, source - 1)


def _resize_bilinear(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    if image.shape[-2:] == (height, width):
        return image.clone()
    batch = image.unsqueeze(0) if image.dim() == 3 else image
    shrinking = height < image.shape[-2] or width < image.shape[-1]
    resized = F.interpolate(
        batch, size=(height, width), mode="bilinear", align_corners=False, antialias=shrinking
    )
    resized = resized.clamp_(0.0, 1.0)
    return resized[0] if image.dim() == 3 else resized


_LUMA = torch.tensor([0.299, 0.587, 0.114])
_RGB_TO_YIQ = torch.tensor(
    [[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], dtype=torch.float64
)


def _luma(image: torch.Tensor) -> torch.Tensor:
    return (image * _LUMA.to(image.dtype).view(3, 1, 1)).sum(dim=-3)


class ColorJitter:
    """Random brightness, contrast, saturation and hue changes (in random order); image only.

    Hue is a rotation of the chroma plane in YIQ space: cheap and close to an HSV hue shift.
    """

    def __init__(
        self, brightness=0.0, contrast=0.0, saturation=0.0, hue=0.0, p: float = 1.0
    ) -> None:
        self.brightness, self.contrast, self.saturation, self.hue, self.p = (
            brightness,
            contrast,
            saturation,
            hue,
            p,
        )

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.p:
            return sample
        image = sample["image"]
        for op in rng.permutation(4):
            if op == 0 and self.brightness:
                image = image * rng.uniform(1 - self.brightness, 1 + self.brightness)
            elif op == 1 and self.contrast:
                mean = _luma(image).mean(dim=(-2, -1), keepdim=True).unsqueeze(-3)
                image = (image - mean) * rng.uniform(1 - self.contrast, 1 + self.contrast) + mean
            elif op == 2 and self.saturation:
                grey = _luma(image).unsqueeze(-3)
                image = (image - grey) * rng.uniform(
                    1 - self.saturation, 1 + self.saturation
                ) + grey
            elif op == 3 and self.hue:
                matrix = _hue_matrix(rng.uniform(-self.hue, self.hue)).to(image.dtype)
                image = torch.einsum("ij,...jhw->...ihw", matrix, image)
            image = image.clamp(0.0, 1.0)
        out = dict(sample)
        out["image"] = image
        return out


def _hue_matrix(turns: float) -> torch.Tensor:
    angle = 2.0 * math.pi * turns
    c, s = math.cos(angle), math.sin(angle)
    rotation = torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], dtype=torch.float64)
    return torch.linalg.inv(_RGB_TO_YIQ) @ rotation @ _RGB_TO_YIQ


class GaussianBlur:
    """Blur the image with a random sigma (separable kernel, edge-replicated borders)."""

    def __init__(self, sigma: tuple[float, float] = (0.1, 2.0), p: float = 1.0) -> None:
        self.sigma = sigma
        self.p = p

    def __call__(self, sample: Sample, rng: np.random.Generator) -> Sample:
        if rng.random() >= self.p:
            return sample
        out = dict(sample)
        out["image"] = gaussian_blur(sample["image"], float(rng.uniform(*self.sigma)))
        return out


def gaussian_blur(image: torch.Tensor, sigma: float) -> torch.Tensor:
    """Blur a (C, H, W) or (B, C, H, W) image with a Gaussian of `sigma` pixels."""
    radius = max(1, math.ceil(3.0 * sigma))
    offsets = torch.arange(-radius, radius + 1, dtype=image.dtype)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    batch = image.unsqueeze(0) if image.dim() == 3 else image
    channels = batch.shape[1]
    padded = F.pad(batch, (radius, radius, radius, radius), mode="replicate")
    horizontal = kernel.view(1, 1, 1, -1).repeat(channels, 1, 1, 1)
    vertical = kernel.view(1, 1, -1, 1).repeat(channels, 1, 1, 1)
    blurred = F.conv2d(F.conv2d(padded, horizontal, groups=channels), vertical, groups=channels)
    return blurred[0] if image.dim() == 3 else blurred


class Compose:
    """Apply transforms in order with one generator per sample.

    The generator is seeded from the sample's `"seed"` (set by the streaming datasets); a
    sample without one draws from this object's own generator, seeded by `seed`.
    """

    def __init__(self, transforms: Sequence[SampleTransform], seed: int = 0) -> None:
        self.transforms = list(transforms)
        self._rng = np.random.default_rng(seed)

    def __call__(self, sample: Sample) -> Sample:
        rng = np.random.default_rng(sample["seed"]) if "seed" in sample else self._rng
        for transform in self.transforms:
            sample = transform(sample, rng)
        return sample


def build_augment(config: AugmentConfig, seed: int = 0) -> Compose:
    """Geometric transforms first (crop/resize to the training size, flip), then photometric."""
    transforms: list[SampleTransform] = []
    if config.crop_prob > 0 or config.size is not None:
        transforms.append(RandomResizedCrop(config.size, config.crop_scale, config.crop_prob))
    if config.hflip_prob > 0:
        transforms.append(HorizontalFlip(config.hflip_prob))
    if config.jitter_prob > 0:
        transforms.append(
            ColorJitter(
                config.brightness,
                config.contrast,
                config.saturation,
                config.hue,
                config.jitter_prob,
            )
        )
    if config.blur_prob > 0:
        transforms.append(GaussianBlur(config.blur_sigma, config.blur_prob))
    return Compose(transforms, seed=seed)
