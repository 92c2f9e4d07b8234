from __future__ import annotations

import numpy as np
import pytest

from depth_core.voting.disagreement import disagreement_map, disagreement_to_rgb


def _ramp(height=24, width=32):
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    return 0.2 + yy / height + 0.3 * (xx > width / 2)


def test_experts_equal_up_to_scale_and_shift_agree():
    base = _ramp()
    dmap = disagreement_map([base, 3.0 * base + 2.0, 0.5 * base - 0.1])
    assert dmap.shape == base.shape and dmap.dtype == np.float32
    assert np.nanmax(dmap) < 1e-4


def test_local_disagreement_is_located():
    base = _ramp()
    other = base.copy()
    other[4:10, 4:12] += 0.8  # this expert sees an object the others do not
    dmap = disagreement_map([base, base * 2, other])
    inside = dmap[4:10, 4:12].mean()
    outside = np.delete(
        dmap.reshape(-1), np.ravel_multi_index(np.mgrid[4:10, 4:12].reshape(2, -1), dmap.shape)
    ).mean()
    assert inside > 3 * outside


def test_an_inverted_expert_is_not_flipped_into_agreement():
    base = _ramp()
    agree = disagreement_map([base, 2 * base, base + 1])
    inverted = disagreement_map([base, 2 * base, 1.5 - base])
    assert np.nanmean(inverted) > 0.2 > np.nanmean(agree)


def test_mask_and_non_finite_pixels_are_nan():
    base = _ramp()
    noisy = base + np.random.default_rng(0).normal(0, 0.05, base.shape)
    noisy[0, 0] = np.nan
    mask = np.ones(base.shape, bool)
    mask[:, -3:] = False
    dmap = disagreement_map([base, noisy], mask)
    assert np.isnan(dmap[0, 0]) and np.isnan(dmap[:, -3:]).all()
    assert np.isfinite(dmap[1:, :-3]).all() and dmap[1:, :-3].mean() > 0


def test_invalid_inputs():
    with pytest.raises(ValueError, match="at least 2"):
        disagreement_map([_ramp()])
    with pytest.raises(ValueError, match="shape"):
        disagreement_map([_ramp(), _ramp(10, 10)])
    with pytest.raises(ValueError, match="mask shape"):
        disagreement_map([_ramp(), _ramp()], np.ones((3, 3), bool))


def test_picture_scale_and_invalid_colour():
    dmap = np.array([[0.0, 0.25, 0.5, 5.0, np.nan]], np.float32)
    rgb = disagreement_to_rgb(dmap, vmax=0.5)
    assert rgb.shape == (1, 5, 3) and rgb.dtype == np.uint8
    assert tuple(rgb[0, 0]) == (255, 255, 255)  # agreement is white
    np.testing.assert_array_equal(rgb[0, 2], rgb[0, 3])  # clipped at vmax
    assert rgb[0, 2].sum() < rgb[0, 1].sum() < rgb[0, 0].sum()  # darker = more disagreement
    assert tuple(rgb[0, 4]) == (140, 140, 140)
    with pytest.raises(ValueError, match="vmax"):
        disagreement_to_rgb(dmap, vmax=0)
