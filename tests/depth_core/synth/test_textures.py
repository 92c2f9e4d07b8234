"""Texture bank: determinism, tiling, mip levels, photo tiles and colour conversions."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from depth_core.synth import textures
from depth_core.synth.textures import (
    build_texture_bank,
    hsv_to_linear,
    linear_to_srgb,
    spectral_noise,
    srgb_to_linear,
)


@pytest.fixture(scope="module")
def synthetic():
    return build_texture_bank("synthetic")


def _sample(bank, tile, u, v, lod=0.0):
    u = torch.as_tensor(u, dtype=torch.float32)
    v = torch.as_tensor(v, dtype=torch.float32)
    return bank.sample(torch.full_like(u, float(tile)), u, v, torch.full_like(u, float(lod)))


def test_banks_are_deterministic_per_seed():
    a = build_texture_bank("synthetic", seed=3, tile_size=16)
    build_texture_bank.cache_clear()
    b = build_texture_bank("synthetic", seed=3, tile_size=16)
    c = build_texture_bank("synthetic", seed=4, tile_size=16)
    assert a is not b and torch.equal(a.atlas, b.atlas)
    assert not torch.equal(a.atlas, c.atlas)


def test_tile_zero_is_flat_white(synthetic):
    values = _sample(synthetic, 0, np.linspace(-3, 3, 50), np.linspace(5, -2, 50), lod=1.3)
    assert torch.allclose(values, torch.ones_like(values), atol=1e-6)


def test_procedural_tiles_repeat_with_period_one(synthetic):
    u = torch.rand(200, generator=torch.Generator().manual_seed(0))
    v = torch.rand(200, generator=torch.Generator().manual_seed(1))
    for group in ("checker", "noise", "bricks", "planks"):
        tile = synthetic.groups[group][0]
        base = _sample(synthetic, tile, u, v)
        assert torch.allclose(base, _sample(synthetic, tile, u + 1.0, v - 2.0), atol=1e-4)
        assert base.std() > 0.05  # a pattern, not a flat colour


def test_coarse_mip_levels_average_the_tile(synthetic):
    tile = synthetic.groups["checker"][0]
    u = torch.rand(100, generator=torch.Generator().manual_seed(2))
    finest = _sample(synthetic, tile, u, u * 0.7, lod=0.0)
    coarsest = _sample(synthetic, tile, u, u * 0.7, lod=synthetic.levels - 1)
    assert finest.std() > 0.3  # black and white squares
    assert coarsest.std() < 1e-4  # one average colour
    assert coarsest.mean().item() == pytest.approx(0.5, abs=0.02)


def test_tiles_never_bleed_into_their_neighbours(synthetic):
    # tile 0 (white) sits beside tile 1 in the atlas; its edges must stay white at every level
    edge = torch.tensor([0.0, 0.999, 0.5, 0.0])
    for lod in range(synthetic.levels):
        values = _sample(synthetic, 0, edge, torch.tensor([0.5, 0.5, 0.0, 0.999]), lod=lod)
        assert torch.allclose(values, torch.ones_like(values), atol=1e-6)


def test_target_bank_holds_photo_crops_from_scikit_image():
    target = build_texture_bank("target")
    assert len(target.groups.get("photo", ())) >= 8
    assert {"photo_bricks", "photo_grass", "photo_gravel"} <= set(target.groups)
    photo = target.groups["photo"][0]
    assert target.rgb[photo] and bool(target.mirrored[photo])
    # mirrored repetition: u and 2 - u read the same texel
    u = torch.linspace(0.05, 0.95, 30)
    assert torch.allclose(
        _sample(target, photo, u, u), _sample(target, photo, 2.0 - u, u), atol=1e-4
    )
    assert not any(group.startswith("photo") for group in build_texture_bank("synthetic").groups)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="domain"):
        build_texture_bank("real")
    with pytest.raises(ValueError, match="tile_size"):
        build_texture_bank("synthetic", tile_size=48)


def test_spectral_noise_is_periodic_and_in_range():
    noise = spectral_noise(np.random.default_rng(0), 32, beta=2.0)
    assert noise.shape == (32, 32) and noise.min() >= 0 and noise.max() <= 1
    # periodic: the jump across the wrap is no larger than a typical neighbour step
    inner = np.abs(np.diff(noise, axis=1)).mean()
    assert np.abs(noise[:, 0] - noise[:, -1]).mean() < 3 * inner


def test_colour_conversions():
    values = torch.linspace(0, 1, 101)
    assert torch.allclose(linear_to_srgb(srgb_to_linear(values)), values, atol=1e-5)
    assert np.allclose(hsv_to_linear(0.0, 1.0, 1.0), [1.0, 0.0, 0.0])
    assert np.allclose(hsv_to_linear(0.5, 0.0, 0.5), srgb_to_linear(np.full(3, 0.5)))


def test_every_procedural_pattern_is_a_valid_tile():
    rng = np.random.default_rng(5)
    for name, make in textures.PROCEDURAL_PATTERNS.items():
        tile = make(rng, 16)
        assert tile.shape == (16, 16), name
        assert np.isfinite(tile).all() and tile.min() >= 0 and tile.max() <= 1, name
