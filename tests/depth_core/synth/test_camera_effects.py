"""Camera effects: reproducible draws, each effect doing what it claims, JPEG round trips."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from depth_core.synth.camera_effects import (
    CameraEffectsConfig,
    EffectDraw,
    apply_sensor_effects,
    blur_kernel,
    jpeg_roundtrip,
    sample_effects,
)

NEUTRAL = {
    "gain": (1.0, 1.0, 1.0),
    "saturation": 1.0,
    "vignetting": 0.0,
    "blur_sigma": 0.0,
    "motion_length": 0.0,
    "motion_angle": 0.0,
    "shot_noise": 0.0,
    "read_noise": 0.0,
    "jpeg_quality": None,
    "noise_seed": 0,
}


def _image(seed=0, size=24):
    rng = np.random.default_rng(seed)
    base = rng.uniform(0.1, 0.8, (1, size, size, 3)).astype(np.float32)
    return torch.from_numpy(base)


def test_draws_are_reproducible_and_vary():
    config = CameraEffectsConfig()
    a = sample_effects(np.random.default_rng(1), config)
    assert a == sample_effects(np.random.default_rng(1), config)
    assert a != sample_effects(np.random.default_rng(2), config)
    low, high = config.jpeg_quality
    qualities = [sample_effects(np.random.default_rng(i), config).jpeg_quality for i in range(50)]
    assert any(q is None for q in qualities) and all(
        low <= q <= high for q in qualities if q is not None
    )


def test_neutral_draw_is_the_identity():
    image = _image()
    out = apply_sensor_effects(image, [EffectDraw(**NEUTRAL)])
    assert torch.allclose(out, image, atol=1e-6)


def test_each_effect_changes_the_image_the_way_it_should():
    image = _image()
    brighter = apply_sensor_effects(image, [EffectDraw(**{**NEUTRAL, "gain": (2.0, 2.0, 2.0)})])
    assert torch.allclose(brighter, 2 * image, atol=1e-5)
    vignetted = apply_sensor_effects(image, [EffectDraw(**{**NEUTRAL, "vignetting": 0.5})])
    ratio = vignetted / image
    assert ratio[0, 0, 0].mean() < ratio[0, 12, 12].mean() - 0.2  # corners lose light
    blurred = apply_sensor_effects(image, [EffectDraw(**{**NEUTRAL, "blur_sigma": 1.0})])
    assert blurred.diff(dim=2).abs().mean() < 0.6 * image.diff(dim=2).abs().mean()
    assert blurred.mean() == pytest.approx(image.mean().item(), rel=0.02)  # blur keeps the energy
    noisy = apply_sensor_effects(
        image, [EffectDraw(**{**NEUTRAL, "read_noise": 0.05, "noise_seed": 3})]
    )
    assert (noisy - image).std() == pytest.approx(0.05, rel=0.2)
    grey = apply_sensor_effects(image, [EffectDraw(**{**NEUTRAL, "saturation": 0.0})])
    assert torch.allclose(grey[..., 0], grey[..., 1]) and torch.allclose(grey[..., 1], grey[..., 2])


def test_blur_kernels_are_normalised_and_motion_streaks_are_oriented():
    for sigma, length, angle in (
        (0.0, 0.0, 0.0),
        (1.0, 0.0, 0.0),
        (0.5, 4.0, 0.0),
        (0.5, 4.0, np.pi / 2),
    ):
        kernel = blur_kernel(sigma, length, angle)
        assert kernel.shape == (9, 9) and kernel.sum() == pytest.approx(1.0, abs=1e-5)
    horizontal = blur_kernel(0.5, 4.0, 0.0)
    assert horizontal[4].sum() > horizontal[:, 4].sum()  # energy spread along the row


def test_jpeg_roundtrip_changes_pixels_and_keeps_format():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    out = jpeg_roundtrip(images, [20, None])
    assert out.shape == images.shape and out.dtype == np.uint8
    assert np.abs(out[0].astype(int) - images[0]).mean() > 5
    assert np.array_equal(out[1], images[1])


def test_mismatched_draws_and_bad_config_are_rejected():
    with pytest.raises(ValueError, match="one EffectDraw per image"):
        apply_sensor_effects(_image(), [])
    with pytest.raises(ValidationError, match="jpeg_quality"):
        CameraEffectsConfig(jpeg_quality=(90, 10))
    with pytest.raises(ValidationError):
        CameraEffectsConfig(vignette=0.3)
