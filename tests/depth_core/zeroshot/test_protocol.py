from __future__ import annotations

import numpy as np
import pytest

from depth_core.zeroshot.protocol import PROTOCOLS, Protocol, eigen_crop_nyu, garg_crop


def _scene(height: int, width: int, near: float = 1.0, far: float = 8.0) -> np.ndarray:
    rows = np.linspace(far, near, height, dtype=np.float32)[:, None]
    cols = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    return rows + cols  # depth varies along both axes: a transposed map would not fit


def test_an_exact_affine_map_of_inverse_depth_scores_abs_rel_0_and_delta1_1():
    depth = _scene(48, 64)
    prediction = 3.0 / depth + 0.25
    score = PROTOCOLS["nyu"].score(prediction, depth, np.ones_like(depth, dtype=bool))
    assert score["abs_rel"] == pytest.approx(0.0, abs=1e-5)
    assert score["delta1"] == 1.0


def test_prediction_at_another_resolution_is_resized_to_the_ground_truth():
    depth = np.full((30, 40), 2.0, np.float32)
    depth[:15] = 6.0  # two flat regions: a bilinear resize keeps them exact away from the edge
    prediction = np.where(np.arange(60)[:, None] < 30, 1 / 6.0, 1 / 2.0) * np.ones((60, 80))
    valid = np.ones_like(depth, dtype=bool)
    valid[14:16] = False  # the blended rows along the boundary
    score = PROTOCOLS["scannet"].score(prediction.astype(np.float32), depth, valid)
    assert score["abs_rel"] == pytest.approx(0.0, abs=1e-5)


def test_nyu_eigen_crop_is_the_published_box_on_480x640():
    rows, cols = eigen_crop_nyu(480, 640)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (45, 471, 41, 601)


def test_kitti_garg_crop_fractions_on_the_benchmark_size():
    rows, cols = garg_crop(375, 1242)
    assert (rows.start, rows.stop, cols.start, cols.stop) == (153, 371, 44, 1197)


@pytest.mark.parametrize("name", ["nyu", "kitti"])
def test_only_pixels_inside_the_crop_are_scored(name):
    protocol = PROTOCOLS[name]
    height, width = (480, 640) if name == "nyu" else (375, 1242)
    depth = _scene(height, width, 2.0, 9.0)
    prediction = 1.0 / depth
    rows, cols = protocol.crop(height, width)
    outside = np.ones((height, width), dtype=bool)
    outside[rows, cols] = False
    spoiled = np.where(outside, 50.0, prediction).astype(np.float32)
    valid = np.ones_like(depth, dtype=bool)
    assert protocol.score(spoiled, depth, valid)["abs_rel"] == pytest.approx(0.0, abs=1e-5)
    inside = prediction.copy()
    inside[rows.start, cols.start] = 50.0  # the crop's first pixel counts
    assert protocol.score(inside, depth, valid)["abs_rel"] > 1e-4
    mask = protocol.evaluation_mask(depth, valid)
    assert mask[rows, cols].all() and not mask[outside].any()


def test_depth_beyond_the_cap_or_below_the_floor_is_not_scored():
    protocol = Protocol(min_depth=1.0, max_depth=10.0, crop=None, source="test")
    depth = np.array([[0.5, 2.0, 4.0], [8.0, 10.0, 30.0]], np.float32)
    valid = np.ones_like(depth, dtype=bool)
    mask = protocol.evaluation_mask(depth, valid)
    assert mask.tolist() == [[False, True, True], [True, True, False]]
    assert not protocol.evaluation_mask(np.array([[np.inf, np.nan]]), np.ones((1, 2), bool)).any()


def test_aligned_prediction_is_clamped_to_the_range_before_inversion():
    # A prediction that aligns to depths beyond the cap is clamped at max_depth: the far
    # pixel's error is bounded by the cap, not by the extrapolated value.
    depth = np.array([[2.0, 4.0, 8.0, 9.5]], np.float32).repeat(16, 0)
    prediction = 1.0 / depth
    prediction[:, 3] = 1.0 / 1000.0  # far beyond the 10 m cap
    protocol = Protocol(min_depth=1e-3, max_depth=10.0, crop=None, source="test")
    uncapped = Protocol(min_depth=1e-3, max_depth=1e6, crop=None, source="test")
    valid = np.ones_like(depth, dtype=bool)
    capped_error = protocol.score(prediction, depth, valid)["abs_rel"]
    assert capped_error < uncapped.score(prediction, depth, valid)["abs_rel"]


def test_nothing_in_range_gives_no_score():
    depth = np.full((8, 8), 500.0, np.float32)
    assert PROTOCOLS["nyu"].score(np.ones((8, 8)), depth, np.ones((8, 8), bool)) is None
