"""What a real camera does to a picture: exposure error, white balance, saturation, vignetting,
defocus and motion blur, photon and read noise, JPEG compression.

These effects are what make the unlabeled target domain look like photographs rather than
renders. They act on the image only; depth is never touched. Radiometric effects work on
linear radiance before tone mapping (as in a camera pipeline); JPEG works on the final 8-bit
picture. Each image's effects are drawn once (`sample_effects`) and then applied
deterministically, so a seed reproduces them exactly.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, model_validator

BLUR_KERNEL = 9  # pixels; covers the largest defocus and motion blur allowed below


class CameraEffectsConfig(BaseModel):
    """Strength of each effect; each image draws its own values within these bounds."""

    model_config = ConfigDict(extra="forbid")

    exposure_stops: float = Field(
        0.6, ge=0.0, le=4.0, description="exposure error drawn in +-x stops"
    )
    white_balance: float = Field(
        0.1, ge=0.0, le=0.5, description="log-gain spread per colour channel"
    )
    saturation: float = Field(0.25, ge=0.0, le=1.0, description="saturation change drawn in +-x")
    vignetting: float = Field(
        0.4, ge=0.0, le=1.0, description="light lost in the corners, drawn in [0, x]"
    )
    blur_probability: float = Field(0.5, ge=0.0, le=1.0)
    blur_sigma_px: float = Field(
        1.1, ge=0.0, le=1.4, description="largest defocus blur sigma (pixels)"
    )
    motion_blur_probability: float = Field(0.15, ge=0.0, le=1.0)
    motion_blur_px: float = Field(4.0, ge=0.0, le=6.0, description="longest motion streak (pixels)")
    shot_noise: float = Field(
        0.04, ge=0.0, le=0.5, description="photon noise std at full white, drawn in [0, x]"
    )
    read_noise: float = Field(
        0.012, ge=0.0, le=0.2, description="signal-independent noise std, drawn in [0, x]"
    )
    jpeg_probability: float = Field(0.85, ge=0.0, le=1.0)
    jpeg_quality: tuple[int, int] = Field(
        (35, 92), description="JPEG quality range (Pillow scale 1-95)"
    )

    @model_validator(mode="after")
    def _check_quality(self) -> CameraEffectsConfig:
        low, high = self.jpeg_quality
        if not 1 <= low <= high <= 95:
            raise ValueError(
                f"jpeg_quality must satisfy 1 <= low <= high <= 95, got {self.jpeg_quality}"
            )
        return self


@dataclass(frozen=True)
class EffectDraw:
    """The effects one image receives."""

    gain: tuple[float, float, float]  # exposure x white balance, per channel
    saturation: float
    vignetting: float
    blur_sigma: float
    motion_length: float
    motion_angle: float
    shot_noise: float
    read_noise: float
    jpeg_quality: int | None
    noise_seed: int


def sample_effects(rng: np.random.Generator, config: CameraEffectsConfig) -> EffectDraw:
    """Draw one image's effects."""
    exposure = 2.0 ** rng.uniform(-config.exposure_stops, config.exposure_stops)
    balance = np.exp(rng.normal(0.0, config.white_balance, 3))
    balance = balance / balance[1]  # white balance shifts hue, exposure sets brightness
    blur = (
        rng.uniform(0.3, 1.0) * config.blur_sigma_px
        if rng.random() < config.blur_probability
        else 0.0
    )
    motion = (
        rng.uniform(0.3, 1.0) * config.motion_blur_px
        if rng.random() < config.motion_blur_probability
        else 0.0
    )
    low, high = config.jpeg_quality
    quality = int(rng.integers(low, high + 1)) if rng.random() < config.jpeg_probability else None
    return EffectDraw(
        gain=tuple(float(g) for g in exposure * balance),
        saturation=float(1.0 + rng.uniform(-config.saturation, config.saturation)),
        vignetting=float(rng.uniform(0.0, config.vignetting)),
        blur_sigma=float(blur),
        motion_length=float(motion),
        motion_angle=float(rng.uniform(0.0, math.pi)),
        shot_noise=float(rng.uniform(0.0, config.shot_noise)),
        read_noise=float(rng.uniform(0.0, config.read_noise)),
        jpeg_quality=quality,
        noise_seed=int(rng.integers(0, 2**31 - 1)),
    )


def blur_kernel(
    sigma: float, motion_length: float, motion_angle: float, size: int = BLUR_KERNEL
) -> np.ndarray:
    """A normalised (size, size) kernel: Gaussian defocus smeared along a motion streak."""
    sigma = max(sigma, 0.35)
    steps = max(1, math.ceil(motion_length * 2))
    offsets = np.linspace(-0.5, 0.5, steps) * motion_length if motion_length > 0 else np.zeros(1)
    grid = np.arange(size) - size // 2
    y, x = np.meshgrid(grid, grid, indexing="ij")
    kernel = np.zeros((size, size))
    for s in offsets:
        cx, cy = s * math.cos(motion_angle), s * math.sin(motion_angle)
        kernel += np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * sigma**2))
    return (kernel / kernel.sum()).astype(np.float32)


def apply_sensor_effects(linear: torch.Tensor, draws: list[EffectDraw]) -> torch.Tensor:
    """Apply the radiometric and optical effects to linear images (B, H, W, 3)."""
    if len(draws) != linear.shape[0]:
        raise ValueError(
            f"need one EffectDraw per image: {len(draws)} draws for {linear.shape[0]} images"
        )
    batch, height, width, _ = linear.shape
    device, dtype = linear.device, linear.dtype
    gain = torch.tensor([d.gain for d in draws], device=device, dtype=dtype).view(batch, 1, 1, 3)
    image = linear * gain
    luminance = image.mean(-1, keepdim=True)
    saturation = torch.tensor([d.saturation for d in draws], device=device, dtype=dtype).view(
        batch, 1, 1, 1
    )
    image = (luminance + (image - luminance) * saturation).clamp(min=0.0)

    ys = (torch.arange(height, device=device, dtype=dtype) + 0.5 - height / 2) / (height / 2)
    xs = (torch.arange(width, device=device, dtype=dtype) + 0.5 - width / 2) / (width / 2)
    radius2 = (ys[:, None] ** 2 + xs[None, :] ** 2) / 2.0  # 1 in the corners
    strength = torch.tensor([d.vignetting for d in draws], device=device, dtype=dtype).view(
        batch, 1, 1
    )
    image = image * (1.0 - strength * radius2**1.5).unsqueeze(-1)

    blurred = [i for i, d in enumerate(draws) if d.blur_sigma > 0 or d.motion_length > 0]
    if blurred:
        kernels = np.stack(
            [
                blur_kernel(draws[i].blur_sigma, draws[i].motion_length, draws[i].motion_angle)
                for i in blurred
            ]
        )
        weight = (
            torch.from_numpy(kernels).to(device, dtype).repeat_interleave(3, dim=0).unsqueeze(1)
        )
        planes = image[blurred].permute(0, 3, 1, 2).reshape(1, len(blurred) * 3, height, width)
        planes = F.pad(planes, (BLUR_KERNEL // 2,) * 4, mode="reflect")
        out = F.conv2d(planes, weight, groups=len(blurred) * 3)
        image = image.clone()
        image[blurred] = out.view(len(blurred), 3, height, width).permute(0, 2, 3, 1)

    noise = np.stack(
        [
            np.random.default_rng(d.noise_seed).standard_normal(
                (2, height, width, 3), dtype=np.float32
            )
            for d in draws
        ]
    )
    noise = torch.from_numpy(noise).to(device, dtype)
    shot = torch.tensor([d.shot_noise for d in draws], device=device, dtype=dtype).view(
        batch, 1, 1, 1
    )
    read = torch.tensor([d.read_noise for d in draws], device=device, dtype=dtype).view(
        batch, 1, 1, 1
    )
    image = image + torch.sqrt(image.clamp(min=0.0)) * shot * noise[:, 0] + read * noise[:, 1]
    return image.clamp(min=0.0)


def jpeg_roundtrip(images: np.ndarray, qualities: list[int | None]) -> np.ndarray:
    """Compress and decompress uint8 images (B, H, W, 3) with Pillow; None keeps an image as is."""
    out = images.copy()
    for i, quality in enumerate(qualities):
        if quality is None:
            continue
        buffer = io.BytesIO()
        Image.fromarray(images[i]).save(buffer, format="JPEG", quality=int(quality))
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out[i] = np.asarray(decoded.convert("RGB"))
    return out
