"""The depth-samples picture (samples.png): image | prediction | ground truth for the first
images of a labeled set, as training draws it beside a model's final weights.

One function, so a model that was trained here and one installed from elsewhere show their
samples the same way.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from depth_core.data.dataset import load_arrays
from depth_core.plots import plot_depth_samples


@torch.inference_mode()
def samples_picture(
    model: nn.Module, dataset_dir: str | Path, n: int, path: str | Path, device: str | torch.device
) -> Path:
    """Draw the first `n` samples of the labeled set at `dataset_dir` into the PNG `path`.

    The model (already on `device`) predicts the images as stored, in one batch, and is left in
    eval mode; the ground truth is 1 / depth where the mask and depth are valid.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    arrays = load_arrays(dataset_dir, limit=n, keys=["image", "depth", "mask"])
    image = torch.from_numpy(arrays["image"]).permute(0, 3, 1, 2).float().div(255.0)
    model.eval()
    pred = model(image.to(device)).float().cpu().numpy()
    depth, mask = arrays["depth"], arrays["mask"].astype(bool) & (arrays["depth"] > 0)
    gt = [
        torch.where(torch.from_numpy(m), 1.0 / torch.from_numpy(d).clamp(min=1e-6), 0.0).numpy()
        for d, m in zip(depth, mask)
    ]
    return plot_depth_samples(list(arrays["image"]), list(pred), gt, Path(path), masks=list(mask))
