"""Small synthetic scenes with known depth and experts of known quality."""

from __future__ import annotations

import numpy as np
import pytest


def make_scene(n_images=3, height=32, width=40, noise=(0.002, 0.02, 0.06, 0.1), seed=0):
    """Ground-truth depth (a floor getting farther up the image plus a near box), RGB photos and
    one disparity map per expert: an affine transform of the true disparity plus noise of the
    given standard deviation (relative to the disparity range)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    depths, images = [], []
    for i in range(n_images):
        depth = 1.0 + 6.0 * (1.0 - yy / height) + 0.3 * i
        box = (np.abs(xx - width * (0.3 + 0.1 * i)) < width / 6) & (yy > height / 3)
        depth = np.where(box, 1.5, depth).astype(np.float32)
        depths.append(depth)
        images.append(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    experts = {}
    for e, sigma in enumerate(noise):
        scale, shift = 1.0 + e, 0.1 * e
        experts[f"expert{e}"] = [
            (scale * (1.0 / d + rng.normal(0.0, sigma, d.shape)) + shift).astype(np.float32)
            for d in depths
        ]
    return depths, images, experts


@pytest.fixture
def scene():
    return make_scene
