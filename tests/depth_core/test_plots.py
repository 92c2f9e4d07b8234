"""The training pictures are real PNGs with the expected layout."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pytest
from matplotlib.figure import Figure
from PIL import Image

from depth_core.plots import plot_depth_samples, plot_epoch_metrics, plot_loss_curve


def _png(path):
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def test_loss_curve_draws_the_losses(tmp_path):
    steps = [{"step": i, "train/loss": 1.0 / (i + 1)} for i in range(50)]
    out = plot_loss_curve(steps, tmp_path / "loss_curve.png")
    pixels = _png(out)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    assert pixels.std() > 10  # not a blank canvas
    assert not list(tmp_path.glob(".*.tmp"))


def test_loss_curve_without_steps_still_writes(tmp_path):
    assert _png(plot_loss_curve([], tmp_path / "empty.png")).size > 0


def test_loss_curve_skips_null_losses_read_back_from_json(tmp_path):
    steps = [{"step": 0, "train/loss": None}, {"step": 1, "train/loss": 0.5}]
    assert _png(plot_loss_curve(steps, tmp_path / "nulls.png")).size > 0


def test_a_failed_save_keeps_the_old_picture_and_closes_the_figure(tmp_path, monkeypatch):
    out = plot_loss_curve([], tmp_path / "loss.png")
    before = out.read_bytes()

    def crash(self, fname, **kwargs):
        Path(fname).write_bytes(b"half a png")
        raise OSError("disk full")

    monkeypatch.setattr(Figure, "savefig", crash)
    with pytest.raises(OSError, match="disk full"):
        plot_loss_curve([{"step": 0, "train/loss": 1.0}], out)
    assert out.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["loss.png"]
    assert plt.get_fignums() == []


def test_epoch_metrics_one_panel_per_metric(tmp_path):
    history = [
        {
            "epoch": e,
            "val/synthetic/abs_rel": 0.3 - 0.01 * e,
            "val/target/abs_rel": 0.4,
            "val/synthetic/delta1": 0.5 + 0.01 * e,
            "val/synthetic/n_images": 8.0,
        }
        for e in range(1, 4)
    ]
    wide = _png(plot_epoch_metrics(history, tmp_path / "val.png"))
    narrow = _png(
        plot_epoch_metrics(
            [{k: v for k, v in row.items() if "delta1" not in k} for row in history],
            tmp_path / "val1.png",
        )
    )
    assert wide.shape[1] > narrow.shape[1] * 1.5  # two panels vs one (n_images not drawn)


def test_depth_samples_grid_rows(tmp_path):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 255, (32, 48, 3), dtype=np.uint8) for _ in range(3)]
    preds = [rng.random((32, 48), dtype=np.float32) for _ in range(3)]
    gts = [rng.random((32, 48), dtype=np.float32), None, rng.random((32, 48), dtype=np.float32)]
    three = _png(plot_depth_samples(images, preds, gts, tmp_path / "s3.png"))
    one = _png(plot_depth_samples(images[:1], preds[:1], gts[:1], tmp_path / "s1.png"))
    assert three.shape[0] > 2 * one.shape[0]


def test_depth_samples_mismatched_lengths(tmp_path):
    with pytest.raises(ValueError, match="must match"):
        plot_depth_samples([np.zeros((4, 4, 3), np.uint8)], [], [None], tmp_path / "x.png")
