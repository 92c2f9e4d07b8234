from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from depth_core.voting.pairs import (
    KIND_EDGE,
    KIND_RANDOM,
    KIND_SAME_ROW,
    PairConfig,
    PointPairs,
    log_disparity_guide,
    sample_pairs,
)


def _step_guide(height, width, edge_col):
    guide = np.zeros((height, width), np.float32)
    guide[:, edge_col:] = 1.0
    return guide


def _distances(pairs: PointPairs) -> np.ndarray:
    return np.sqrt(((pairs.point1 - pairs.point2).astype(float) ** 2).sum(axis=1))


def _as_set(pairs: PointPairs, image: int) -> set:
    sel = pairs.image_index == image
    return {
        (tuple(a), tuple(b), int(k))
        for a, b, k in zip(pairs.point1[sel], pairs.point2[sel], pairs.kind[sel])
    }


def test_same_seed_same_pairs_and_other_seed_other_pairs():
    cfg = PairConfig(pairs_per_image=50, seed=3)
    shapes = [(20, 30), (25, 25)]
    a = sample_pairs(shapes, cfg, ["a", "b"])
    b = sample_pairs(shapes, cfg, ["a", "b"])
    c = sample_pairs(shapes, cfg.model_copy(update={"seed": 4}), ["a", "b"])
    for field in ("image_index", "point1", "point2", "kind"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.point1, c.point1)


def test_pairs_of_an_image_do_not_depend_on_the_other_images():
    cfg = PairConfig(pairs_per_image=40, seed=1)
    forward = sample_pairs([(20, 30), (24, 24), (16, 40)], cfg, ["x", "y", "z"])
    backward = sample_pairs([(16, 40), (24, 24), (20, 30)], cfg, ["z", "y", "x"])
    assert _as_set(forward, 0) == _as_set(backward, 2)
    assert _as_set(forward, 2) == _as_set(backward, 0)
    assert _as_set(forward, 1) == _as_set(backward, 1)


def test_bounds_min_distance_and_valid_mask_for_every_kind():
    height, width = 30, 50
    valid = np.ones((height, width), bool)
    valid[:, :10] = False  # e.g. no ground truth on the left
    valid[5:9, :] = False
    cfg = PairConfig(pairs_per_image=300, hard_fraction=0.6, min_distance=6.0, seed=0)
    pairs = sample_pairs([(height, width)], cfg, ["img"], [valid], [_step_guide(height, width, 30)])
    assert len(pairs) == 300
    assert set(np.unique(pairs.kind)) == {KIND_RANDOM, KIND_SAME_ROW, KIND_EDGE}
    for p in (pairs.point1, pairs.point2):
        assert p[:, 0].min() >= 0 and p[:, 0].max() < height
        assert p[:, 1].min() >= 0 and p[:, 1].max() < width
        assert valid[p[:, 0], p[:, 1]].all()
    assert _distances(pairs).min() >= 6.0


def test_hard_pairs_are_same_row_and_straddle_the_depth_edge():
    height, width, edge = 24, 48, 20
    cfg = PairConfig(pairs_per_image=200, hard_fraction=0.5, same_row_share=0.5, seed=2)
    pairs = sample_pairs([(height, width)], cfg, ["img"], None, [_step_guide(height, width, edge)])
    kinds = np.bincount(pairs.kind, minlength=3)
    assert kinds[KIND_SAME_ROW] == 50 and kinds[KIND_EDGE] == 50 and kinds[KIND_RANDOM] == 100
    row = pairs.select(pairs.kind == KIND_SAME_ROW)
    np.testing.assert_array_equal(row.point1[:, 0], row.point2[:, 0])
    edge_pairs = pairs.select(pairs.kind == KIND_EDGE)
    left1 = edge_pairs.point1[:, 1] < edge
    left2 = edge_pairs.point2[:, 1] < edge
    assert (left1 != left2).all()  # one point on each side of the step
    assert 0 < left1.sum() < len(edge_pairs)  # point order is shuffled


def test_without_guide_all_hard_pairs_are_same_row():
    cfg = PairConfig(pairs_per_image=40, hard_fraction=0.5)
    pairs = sample_pairs([(16, 32)], cfg)
    assert (pairs.kind == KIND_EDGE).sum() == 0
    assert (pairs.kind == KIND_SAME_ROW).sum() == 20


def test_flat_guide_falls_back_to_random_pairs():
    cfg = PairConfig(pairs_per_image=40, hard_fraction=1.0, same_row_share=0.0)
    pairs = sample_pairs([(16, 32)], cfg, guides=[np.zeros((16, 32))])
    assert len(pairs) == 40
    assert (pairs.kind == KIND_RANDOM).all()


def test_too_few_valid_pixels_gives_fewer_pairs():
    cfg = PairConfig(pairs_per_image=20, min_distance=5)
    tiny = np.zeros((10, 10), bool)
    tiny[0, 0] = tiny[0, 9] = True  # exactly one admissible pair (in two orders)
    empty = np.zeros((10, 10), bool)
    pairs = sample_pairs([(10, 10), (10, 10)], cfg, valid_masks=[tiny, empty])
    assert (pairs.image_index == 1).sum() == 0
    first = pairs.select(pairs.image_index == 0)
    assert 0 < len(first) <= 20
    assert {tuple(p) for p in np.concatenate([first.point1, first.point2])} == {(0, 0), (0, 9)}


def test_images_of_different_sizes():
    cfg = PairConfig(pairs_per_image=30)
    shapes = [(12, 50), (40, 9)]
    pairs = sample_pairs(shapes, cfg)
    for i, (h, w) in enumerate(shapes):
        sel = pairs.select(pairs.image_index == i)
        assert len(sel) == 30
        assert max(sel.point1[:, 0].max(), sel.point2[:, 0].max()) < h
        assert max(sel.point1[:, 1].max(), sel.point2[:, 1].max()) < w


def test_config_rejects_unknown_keys_and_bad_values():
    with pytest.raises(ValidationError):
        PairConfig(pairs_per_image=10, colour="red")
    with pytest.raises(ValidationError):
        PairConfig(hard_fraction=1.5)
    with pytest.raises(ValidationError):
        PairConfig(min_distance=0)


def test_mismatched_lists_are_reported_by_name():
    with pytest.raises(ValueError, match="valid_masks"):
        sample_pairs([(4, 4), (4, 4)], PairConfig(), valid_masks=[None])


def test_log_disparity_guide_ignores_expert_scale():
    base = np.linspace(0.1, 1.0, 40, dtype=np.float32).reshape(5, 8)
    a = log_disparity_guide([base, base])
    b = log_disparity_guide([base, 7.0 * base])
    np.testing.assert_allclose(a, b, atol=1e-5)
