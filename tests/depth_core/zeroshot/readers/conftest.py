"""Writing benchmark fixtures: pictures and 16-bit depth PNGs in the benchmarks' own formats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _save_picture(path: Path, array: np.ndarray) -> Path:
    """Save `array` (uint8 RGB or uint16 grey) with the format the suffix names."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.ascontiguousarray(array)).save(path)
    return path


@pytest.fixture
def save_picture():
    return _save_picture


@pytest.fixture
def ramp_image():
    """An (H, W, 3) uint8 picture that differs along both axes, so a transposed or flipped
    read cannot match it."""

    def make(height: int, width: int, offset: int = 0) -> np.ndarray:
        rows, cols = np.mgrid[0:height, 0:width]
        red = (offset + 7 * rows + cols) % 256
        green = (3 * cols + 11) % 256
        blue = (5 * rows + 2 * offset) % 256
        return np.stack([red, green, blue], axis=-1).astype(np.uint8)

    return make
