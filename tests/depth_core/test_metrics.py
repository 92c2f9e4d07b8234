"""depth_core.metrics: hand-computed cases, a per-image float64 reference, and the known
behaviour of perfect, inverted and row-prior predictions."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from depth_core.metrics import evaluate_disparity, pair_accuracy, row_prior_disparity, summarize


def ref_abs_rel_delta1(pred, gt, mask, max_depth=None):
    """One image, float64, as the evaluation convention reads."""
    p, g = pred[mask], gt[mask]
    design = np.stack([p, np.ones_like(p)], axis=1)
    (s, t), *_ = np.linalg.lstsq(design, 1.0 / g, rcond=None)
    far = g.max() if max_depth is None else max_depth
    depth = 1.0 / np.maximum(s * p + t, 1.0 / far)
    ratio = np.maximum(depth / g, g / depth)
    return np.mean(np.abs(depth - g) / g), np.mean(ratio < 1.25), s


def random_scene(seed, batch=4, height=10, width=12):
    gen = torch.Generator().manual_seed(seed)
    gt = 1.0 + 19.0 * torch.rand(batch, height, width, generator=gen)
    noise = 1.0 + 0.3 * torch.rand(batch, height, width, generator=gen)
    pred = 3.0 / gt * noise + 0.2
    mask = (
        torch.rand(batch, height, width, generator=gen)
        < torch.linspace(0.3, 1.0, batch)[:, None, None]
    )
    return pred, gt, mask


def ground_plane(height=32, width=24, horizon=10.5, focal=100.0, camera_height=1.5):
    """z-depth of a flat floor seen by a level pinhole camera; rows above the horizon are sky."""
    rows = torch.arange(height, dtype=torch.float32)[:, None].expand(height, width)
    below = rows > horizon
    depth = torch.where(below, focal * camera_height / (rows - horizon).clamp(min=1e-3), 0.0)
    return depth, below


# ----------------------------------------------------------------------------------------------
# evaluate_disparity


def test_perfect_prediction_up_to_scale_and_shift():
    _, gt, mask = random_scene(0)
    metrics = evaluate_disparity(
        2.0 / gt + 0.5, gt, mask, generator=torch.Generator().manual_seed(0)
    )
    assert set(metrics) == {"abs_rel", "delta1", "pair_accuracy", "scale"}
    assert all(v.shape == (4,) and v.dtype == torch.float32 for v in metrics.values())
    np.testing.assert_allclose(metrics["abs_rel"].numpy(), 0.0, atol=1e-5)
    np.testing.assert_array_equal(metrics["delta1"].numpy(), 1.0)
    np.testing.assert_array_equal(metrics["pair_accuracy"].numpy(), 1.0)
    np.testing.assert_allclose(metrics["scale"].numpy(), 0.5, rtol=1e-4)


def test_inverted_prediction_is_exposed_by_scale_and_pair_accuracy():
    _, gt, mask = random_scene(1)
    metrics = evaluate_disparity(gt.clone(), gt, mask)  # depth passed off as disparity
    assert (metrics["scale"] < 0).all()
    assert (metrics["pair_accuracy"] < 0.5).all()
    summary = summarize(metrics)
    assert summary["inverted_fraction"] == 1.0
    assert summary["pair_accuracy"] == 0.0


def test_matches_per_image_float64_reference():
    pred, gt, mask = random_scene(2)
    for max_depth in (None, 12.0):
        metrics = evaluate_disparity(pred, gt, mask, max_depth=max_depth)
        for b in range(pred.shape[0]):
            abs_rel, delta1, scale = ref_abs_rel_delta1(
                pred[b].double().numpy(), gt[b].double().numpy(), mask[b].numpy(), max_depth
            )
            assert metrics["abs_rel"][b].item() == pytest.approx(abs_rel, rel=1e-4)
            assert metrics["delta1"][b].item() == pytest.approx(delta1, abs=1e-6)
            assert metrics["scale"][b].item() == pytest.approx(scale, rel=1e-4)


def test_hand_case_with_max_depth_clamp():
    gt = torch.tensor([[[1.0, 2.0, 4.0]]])
    mask = torch.ones_like(gt, dtype=torch.bool)
    exact = evaluate_disparity(1.0 / gt, gt, mask)
    assert exact["abs_rel"].item() == pytest.approx(0.0, abs=1e-6)
    assert exact["delta1"].item() == 1.0
    # aligned disparities 1, 0.5, 0.25 -> clamped at 1/2 -> depths 1, 2, 2
    clamped = evaluate_disparity(1.0 / gt, gt, mask, max_depth=2.0)
    assert clamped["abs_rel"].item() == pytest.approx((0 + 0 + 0.5) / 3)
    assert clamped["delta1"].item() == pytest.approx(2 / 3)


def test_invalid_pixels_are_ignored():
    pred, gt, mask = random_scene(3)
    spoiled_pred = torch.where(mask, pred, 1e6)
    spoiled_gt = torch.where(mask, gt, 0.0)
    gen = torch.Generator().manual_seed(0)
    clean = evaluate_disparity(pred, gt, mask, generator=torch.Generator().manual_seed(0))
    spoiled = evaluate_disparity(spoiled_pred, spoiled_gt, mask, generator=gen)
    for key in clean:
        torch.testing.assert_close(clean[key], spoiled[key])


def test_empty_image_gives_nan_and_summary_skips_it():
    pred, gt, mask = random_scene(4)
    mask[1] = False
    metrics = evaluate_disparity(pred, gt, mask)
    assert math.isnan(metrics["abs_rel"][1]) and math.isnan(metrics["delta1"][1])
    assert math.isnan(metrics["pair_accuracy"][1])
    assert metrics["scale"][1] == 0.0
    summary = summarize(metrics)
    keep = [0, 2, 3]
    assert summary["abs_rel"] == pytest.approx(metrics["abs_rel"][keep].double().mean().item())
    assert not math.isnan(summary["pair_accuracy"])


def test_constant_depth_has_no_ordinal_pairs():
    gt = torch.full((1, 6, 6), 3.0)
    metrics = evaluate_disparity(torch.rand(1, 6, 6), gt, torch.ones(1, 6, 6, dtype=torch.bool))
    assert math.isnan(metrics["pair_accuracy"][0])
    assert metrics["abs_rel"][0].item() == pytest.approx(0.0, abs=1e-6)  # fitted scale 0: constant


def test_sampled_pair_accuracy_is_seeded_and_close_to_exhaustive():
    pred, gt, mask = random_scene(5, batch=2, height=8, width=8)
    pred = 1.0 / gt + 0.04 * torch.randn(pred.shape, generator=torch.Generator().manual_seed(1))
    first = evaluate_disparity(
        pred, gt, mask, n_pairs=3000, generator=torch.Generator().manual_seed(7)
    )
    again = evaluate_disparity(
        pred, gt, mask, n_pairs=3000, generator=torch.Generator().manual_seed(7)
    )
    torch.testing.assert_close(first["pair_accuracy"], again["pair_accuracy"])
    for b in range(2):
        p, g = pred[b][mask[b]].double(), gt[b][mask[b]].double()
        ordinal = torch.maximum(g[:, None], g[None]) > 1.05 * torch.minimum(g[:, None], g[None])
        right = torch.where(g[:, None] < g[None], p[:, None] > p[None], p[None] > p[:, None])
        exhaustive = (right & ordinal).sum() / ordinal.sum()
        assert first["pair_accuracy"][b].item() == pytest.approx(exhaustive.item(), abs=0.04)


def test_pairs_closer_than_five_percent_in_depth_are_not_scored():
    gt = torch.tensor([[[1.0, 1.02, 2.0, 2.0]]])
    pred = torch.tensor([[[1.0, 1.1, 0.5, 0.5]]])  # wrong only on the 2% pair
    metrics = evaluate_disparity(pred, gt, torch.ones_like(gt, dtype=torch.bool), n_pairs=500)
    assert metrics["pair_accuracy"].item() == 1.0


def test_bad_inputs_are_reported():
    pred, gt, mask = random_scene(6)
    with pytest.raises(ValueError, match="gt_depth"):
        evaluate_disparity(pred, gt[:, 1:], mask)
    with pytest.raises(TypeError, match="mask"):
        evaluate_disparity(pred, gt, mask.float())
    with pytest.raises(ValueError, match="max_depth"):
        evaluate_disparity(pred, gt, mask, max_depth=0.0)


# ----------------------------------------------------------------------------------------------
# the row prior on a ground plane


def test_row_prior_values():
    prior = row_prior_disparity(3, 2)
    assert prior.dtype == torch.float32 and prior.shape == (3, 2)
    assert prior.tolist() == [[1.0, 1.0], [2.0, 2.0], [3.0, 3.0]]
    with pytest.raises(ValueError, match="height"):
        row_prior_disparity(0, 4)


def test_row_prior_is_exact_on_a_ground_plane():
    # floor disparity (row - horizon) / (focal * camera height) is affine in the row index
    depth, valid = ground_plane()
    prior = row_prior_disparity(*depth.shape)
    metrics = evaluate_disparity(prior[None], depth[None], valid[None])
    assert metrics["abs_rel"].item() == pytest.approx(0.0, abs=1e-4)
    assert metrics["delta1"].item() == 1.0
    assert metrics["pair_accuracy"].item() == 1.0
    assert metrics["scale"].item() == pytest.approx(1 / 150.0, rel=1e-3)


def test_flipped_row_prior_is_fully_inverted_on_a_ground_plane():
    depth, valid = ground_plane()
    flipped = row_prior_disparity(*depth.shape).flip(0)
    metrics = evaluate_disparity(flipped[None], depth[None], valid[None])
    assert metrics["scale"].item() < 0
    assert metrics["pair_accuracy"].item() == 0.0


# ----------------------------------------------------------------------------------------------
# pair_accuracy and summarize


def test_pair_accuracy_hand_case_ties_count_as_wrong():
    disp = torch.tensor([[1.0, 2.0], [3.0, 3.0]])
    points1 = torch.tensor([[0, 1], [1, 0], [0, 0], [1, 0]])
    points2 = torch.tensor([[0, 0], [0, 1], [1, 1], [1, 1]])
    closer = torch.tensor([1, 2, 1, 1])
    # right, wrong, wrong, tie (wrong)
    assert pair_accuracy(disp, points1, points2, closer).item() == pytest.approx(0.25)


def test_pair_accuracy_with_batch_index():
    disp = torch.stack([torch.tensor([[1.0, 2.0]]), torch.tensor([[2.0, 1.0]])])
    points1, points2 = torch.tensor([[0, 0], [0, 0]]), torch.tensor([[0, 1], [0, 1]])
    closer = torch.tensor([2, 2])
    accuracy = pair_accuracy(disp, points1, points2, closer, batch_index=torch.tensor([0, 1]))
    assert accuracy.item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="batch_index"):
        pair_accuracy(disp, points1, points2, closer)


def test_pair_accuracy_rejects_bad_points():
    disp = torch.zeros(3, 3)
    with pytest.raises(ValueError, match="points2"):
        pair_accuracy(disp, torch.tensor([[0, 0]]), torch.tensor([[3, 0]]), torch.tensor([1]))
    with pytest.raises(ValueError, match="closer"):
        pair_accuracy(disp, torch.tensor([[0, 0]]), torch.tensor([[1, 0]]), torch.tensor([0]))
    assert math.isnan(
        pair_accuracy(
            disp,
            torch.zeros(0, 2, dtype=torch.long),
            torch.zeros(0, 2, dtype=torch.long),
            torch.zeros(0),
        ).item()
    )


def test_summarize_averages_images_across_batches():
    first = {
        "abs_rel": torch.tensor([0.1, 0.3]),
        "pair_accuracy": torch.tensor([1.0, float("nan")]),
        "scale": torch.tensor([1.0, -2.0]),
    }
    second = {
        "abs_rel": torch.tensor([0.2]),
        "pair_accuracy": torch.tensor([0.5]),
        "scale": torch.tensor([3.0]),
    }
    summary = summarize([first, second])
    assert summary["abs_rel"] == pytest.approx(0.2)
    assert summary["pair_accuracy"] == pytest.approx(0.75)
    assert summary["inverted_fraction"] == pytest.approx(1 / 3)
    assert all(isinstance(v, float) for v in summary.values())
    with pytest.raises(ValueError):
        summarize([])
