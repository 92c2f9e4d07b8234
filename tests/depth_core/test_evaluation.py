"""evaluate_model / evaluate_row_prior / MetricAccumulator on small hand-made RGB-D sets."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from depth_core.data.manifest import finalize_dataset
from depth_core.data.shards import shard_path, write_shard
from depth_core.evaluation import MetricAccumulator, evaluate_model, evaluate_row_prior

KEYS = {"abs_rel", "delta1", "pair_accuracy", "inverted_fraction", "n_images"}


def _dataset(root, n=6, size=24, nearer_at_bottom=True, seed=0):
    """Disparity grows down the image (a ground plane) with per-image noise; the red channel
    encodes the disparity so a model can read it back exactly (up to uint8 rounding)."""
    rng = np.random.default_rng(seed)
    rows = np.linspace(0.2, 1.0, size, dtype=np.float32)
    if not nearer_at_bottom:
        rows = rows[::-1].copy()
    disp = rows[None, :, None] * rng.uniform(0.9, 1.1, (n, size, size)).astype(np.float32)
    depth = (1.0 / disp).astype(np.float32)
    mask = np.ones_like(depth, dtype=bool)
    mask[:, :, :2] = False
    depth[~mask] = 0.0
    image = np.zeros((n, size, size, 3), np.uint8)
    image[..., 0] = np.round(disp / disp.max() * 255).astype(np.uint8)
    for k, start in enumerate(range(0, n, 4)):
        part = slice(start, min(n, start + 4))
        write_shard(
            shard_path(root, k),
            {
                "id": np.array([f"e{i}" for i in range(n)])[part],
                "image": image[part],
                "depth": depth[part],
                "mask": mask[part],
            },
        )
    finalize_dataset(root)
    return root


class RedChannel(nn.Module):
    """Disparity = sign * red channel: perfect (sign=1) or inverted (sign=-1). It runs at the
    datasets' size, so inference feeds it the images as stored."""

    config = SimpleNamespace(img_size=24)
    input_multiple = (1, 1)

    def __init__(self, sign: float = 1.0):
        super().__init__()
        self.sign = nn.Parameter(torch.tensor(sign))

    def forward(self, image):
        return self.sign * image[:, 0] + 2.0


def test_perfect_model_scores_perfectly(tmp_path):
    data = _dataset(tmp_path / "d")
    result = evaluate_model(RedChannel(), data, batch_size=4)
    assert set(result) == KEYS
    assert result["n_images"] == 6
    assert result["abs_rel"] < 0.01 and result["delta1"] == 1.0
    assert result["pair_accuracy"] > 0.97 and result["inverted_fraction"] == 0.0


def test_inverted_model_is_exposed(tmp_path):
    data = _dataset(tmp_path / "d")
    result = evaluate_model(RedChannel(-1.0), data, batch_size=4)
    assert result["inverted_fraction"] == 1.0
    assert result["pair_accuracy"] < 0.03
    # least squares flips the sign back, so the aligned metrics alone would look fine
    assert result["abs_rel"] < 0.01


def test_max_images_and_mode_restored(tmp_path):
    data = _dataset(tmp_path / "d")
    model = RedChannel().train()
    assert evaluate_model(model, data, batch_size=4, max_images=5)["n_images"] == 5
    assert model.training


def test_row_prior_baseline(tmp_path):
    ground = evaluate_row_prior(_dataset(tmp_path / "ground"))
    assert set(ground) == KEYS
    assert ground["pair_accuracy"] > 0.9 and ground["inverted_fraction"] == 0.0
    upside_down = evaluate_row_prior(_dataset(tmp_path / "ceiling", nearer_at_bottom=False))
    assert upside_down["inverted_fraction"] == 1.0 and upside_down["pair_accuracy"] < 0.1


def _score(predictions, depths, masks):
    accumulator = MetricAccumulator()
    for pred, depth, mask in zip(predictions, depths, masks):
        accumulator.add(pred, depth, mask)
    return accumulator.result()


def test_accumulated_predictions_of_any_size():
    rng = np.random.default_rng(0)
    depths = [
        rng.uniform(1, 5, (10, 14)).astype(np.float32),
        rng.uniform(1, 5, (7, 9)).astype(np.float32),
    ]
    masks = [np.ones_like(d, dtype=bool) for d in depths]
    preds = [3.0 / d + 1.0 for d in depths]  # exact up to scale and shift
    result = _score(preds, depths, masks)
    assert result["n_images"] == 2 and result["abs_rel"] < 1e-4 and result["pair_accuracy"] == 1.0
    with pytest.raises(ValueError, match="differ in size"):
        _score([preds[0]], [depths[1]], [masks[1]])
    with pytest.raises(ValueError, match="no images"):
        _score([], [], [])


def test_missing_dataset(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        evaluate_model(RedChannel(), tmp_path / "missing")


def test_unusable_ground_truth_is_not_scored_perfect():
    rng = np.random.default_rng(0)
    depth = rng.uniform(1.0, 5.0, (3, 16, 16)).astype(np.float32)
    mask = np.ones_like(depth, dtype=bool)
    pred = [rng.uniform(0.1, 1.0, (16, 16)).astype(np.float32) for _ in range(3)]
    honest = _score(pred, depth, mask)
    one_pixel = np.zeros((16, 16), bool)
    one_pixel[3, 3] = True
    flat = np.full((16, 16), 2.0, np.float32)
    result = _score(
        [*pred, pred[0], pred[1]], [*depth, depth[0], flat], [*mask, one_pixel, mask[0]]
    )
    assert result == honest  # the two unusable images change nothing
