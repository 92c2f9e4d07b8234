"""Training pictures: loss curve, per-epoch validation metrics, and a depth-sample grid
(`save_figure` also writes the benchmark chart).

They are written next to every checkpoint so a person (or MLflow) can see at a glance whether
a run learned anything; the Agg backend keeps them working without a display.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from depth_core.atomic_io import atomic_path
from depth_core.viz import colorize_disparity


def save_figure(fig, path: Path) -> Path:
    """Atomic PNG write: a reader never sees a half-written picture; the figure is freed."""
    path = Path(path)
    try:
        with atomic_path(path) as temp:
            fig.savefig(temp, format="png", dpi=100, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if window <= 1 or len(values) < window:
        return values
    kernel = np.ones(window) / window
    head = np.array([values[: i + 1].mean() for i in range(window - 1)])
    return np.concatenate([head, np.convolve(values, kernel, mode="valid")])


def plot_loss_curve(steps: Sequence[dict[str, float]], path: Path, key: str = "train/loss") -> Path:
    """Per-step loss (raw and moving average) against the step; `steps` items hold "step" and `key`."""
    rows = [row for row in steps if row.get(key) is not None and np.isfinite(row[key])]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    if rows:
        x = np.array([row["step"] for row in rows], dtype=float)
        y = np.array([row[key] for row in rows], dtype=float)
        ax.plot(x, y, color="0.75", linewidth=0.8, label=key)
        ax.plot(
            x, _smooth(y, max(1, len(y) // 20)), color="C0", linewidth=1.6, label="moving average"
        )
        ax.legend(loc="upper right")
    else:
        ax.text(0.5, 0.5, "no steps yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_ylabel(key)
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def plot_epoch_metrics(
    history: Sequence[dict[str, float]], path: Path, prefix: str = "val/"
) -> Path:
    """One panel per metric name (abs_rel, delta1, ...), one line per validation set."""
    names = sorted(
        {key.rsplit("/", 1)[-1] for row in history for key in row if key.startswith(prefix)}
    )
    names = [n for n in names if n != "n_images"]
    cols = max(1, min(3, len(names)))
    rows_n = max(1, -(-len(names) // cols))
    fig, axes = plt.subplots(rows_n, cols, figsize=(4 * cols, 3 * rows_n), squeeze=False)
    for ax in axes.flat[len(names) :]:
        ax.axis("off")
    if not names:
        axes[0, 0].axis("on")
        axes[0, 0].text(0.5, 0.5, "no validation metrics", ha="center", va="center")
    for ax, name in zip(axes.flat, names):
        keys = sorted(
            {k for row in history for k in row if k.startswith(prefix) and k.endswith("/" + name)}
        )
        for key in keys:
            points = [
                (row.get("epoch", i + 1), row[key]) for i, row in enumerate(history) if key in row
            ]
            x, y = zip(*points)
            ax.plot(x, y, marker="o", label=key[len(prefix) : -len(name) - 1] or key)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return save_figure(fig, path)


def plot_depth_samples(
    images: Sequence[np.ndarray],
    predictions: Sequence[np.ndarray],
    ground_truth: Sequence[np.ndarray | None],
    path: Path,
    masks: Sequence[np.ndarray | None] | None = None,
) -> Path:
    """Rows of image | predicted disparity | ground-truth disparity (black where invalid)."""
    if not (len(images) == len(predictions) == len(ground_truth)):
        raise ValueError(
            f"plot_depth_samples: {len(images)} images, {len(predictions)} predictions and "
            f"{len(ground_truth)} ground truths must match"
        )
    n = max(1, len(images))
    fig, axes = plt.subplots(n, 3, figsize=(7.5, 2.5 * n), squeeze=False)
    for ax, title in zip(axes[0], ("image", "prediction", "ground truth")):
        ax.set_title(title)
    for i, (image, pred, gt) in enumerate(zip(images, predictions, ground_truth)):
        mask = None if masks is None else masks[i]
        axes[i, 0].imshow(np.asarray(image))
        axes[i, 1].imshow(colorize_disparity(pred))
        if gt is not None:
            axes[i, 2].imshow(colorize_disparity(gt, mask))
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    return save_figure(fig, path)
