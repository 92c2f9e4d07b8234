"""Export-time parity: onnxruntime against PyTorch on rendered, photo-like images.

Inputs are target-domain renders (photo textures, camera effects) at several sizes and aspect
ratios, not noise: a graph that mishandles padding, resizing or a far background shows there.
The figure is per image ``max |onnx - torch| / max |torch|``: disparity is relative, and an
element-wise ratio would explode at the near-zero far pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from depth_core.export.config import ExportConfig


class ParityError(ValueError):
    """The exported graph disagrees with the PyTorch model beyond the tolerance."""


def parity_images(
    sizes: Sequence[tuple[int, int]], per_size: int, seed: int = 0
) -> dict[tuple[int, int], np.ndarray]:
    """``per_size`` uint8 (N, H, W, 3) target-domain renders for each (height, width)."""
    from depth_core.synth.render import RenderConfig, render_batch

    images = {}
    for index, (height, width) in enumerate(sizes):
        config = RenderConfig(height=int(height), width=int(width), domain="target")
        images[(int(height), int(width))] = render_batch(config, seed + index, per_size)["image"]
    return images


def max_relative_difference(reference: np.ndarray, candidate: np.ndarray) -> float:
    """The worst image's ``max |candidate - reference| / max |reference|`` over a batch."""
    reference = reference.reshape(len(reference), -1).astype(np.float64)
    candidate = candidate.reshape(len(candidate), -1).astype(np.float64)
    peak = np.maximum(np.abs(reference).max(axis=1), 1e-12)
    return float((np.abs(candidate - reference).max(axis=1) / peak).max())


def compare(
    model: torch.nn.Module,
    exported: torch.nn.Module,
    images: dict[tuple[int, int], np.ndarray],
) -> dict[str, float]:
    """Max relative difference per size ``"HxW"``: fp32 PyTorch vs the exported graph."""
    figures = {}
    for (height, width), batch in images.items():
        x = torch.from_numpy(np.ascontiguousarray(batch)).permute(0, 3, 1, 2).float() / 255.0
        with torch.inference_mode():
            reference = model(x).float().numpy()
            candidate = exported(x).float().numpy()
        if candidate.shape != reference.shape:
            figures[f"{height}x{width}"] = float("inf")
            continue
        figures[f"{height}x{width}"] = max_relative_difference(reference, candidate)
    return figures


def check(figures: dict[str, float], config: ExportConfig, what: str) -> float:
    """The worst figure; ParityError naming the sizes above ``config.parity_tolerance``."""
    worst = max(figures.values())
    if not worst <= config.parity_tolerance:
        bad = {k: v for k, v in figures.items() if not v <= config.parity_tolerance}
        raise ParityError(
            f"{what}: onnxruntime differs from PyTorch by more than "
            f"{config.parity_tolerance:g} (max relative difference per size: {bad})"
        )
    return worst
