"""Colourised depth pictures shared by previews, predictions and reports."""

from __future__ import annotations

import numpy as np

# A compact perceptual colour map (approximation of "turbo", near = warm, far = cool),
# kept here so pictures need no plotting library at run time.
_TURBO_KEYS = np.array(
    [
        [0.19, 0.07, 0.23],
        [0.27, 0.42, 0.88],
        [0.16, 0.73, 0.88],
        [0.29, 0.96, 0.49],
        [0.72, 0.96, 0.21],
        [0.99, 0.73, 0.22],
        [0.95, 0.36, 0.10],
        [0.48, 0.02, 0.01],
    ],
    dtype=np.float32,
)


# Pixels coloured per step: the colour lookup makes ~10 float copies of what it is given.
_CHUNK_PIXELS = 1 << 20


def _lookup(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to RGB floats by linear interpolation between the key colours."""
    pos = np.clip(values, 0.0, 1.0) * (len(_TURBO_KEYS) - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(_TURBO_KEYS) - 1)
    frac = (pos - lo)[..., None]
    return _TURBO_KEYS[lo] * (1.0 - frac) + _TURBO_KEYS[hi] * frac


def colorize_disparity(
    disparity: np.ndarray,
    mask: np.ndarray | None = None,
    percentiles: tuple[float, float] = (2.0, 98.0),
) -> np.ndarray:
    """Colourise a (H, W) disparity map (larger = nearer = warmer) to uint8 RGB.

    The range is set by robust percentiles over valid pixels so one outlier cannot wash out
    the picture; invalid (masked, NaN, inf) pixels are drawn black.
    """
    disp = np.asarray(disparity, dtype=np.float32)
    valid = np.isfinite(disp)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    out = np.zeros(disp.shape + (3,), dtype=np.uint8)
    if not valid.any():
        return out
    lo, hi = np.percentile(disp[valid], percentiles)
    scale = hi - lo if hi > lo else 1.0
    rows = max(1, _CHUNK_PIXELS // disp.shape[-1])
    for top in range(0, disp.shape[0], rows):  # a few rows at a time: bounded float copies
        part, ok = disp[top : top + rows], valid[top : top + rows]
        rgb = (_lookup((np.where(ok, part, lo) - lo) / scale) * 255.0 + 0.5).astype(np.uint8)
        out[top : top + rows][ok] = rgb[ok]
    return out


def colorize_depth(depth: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Colourise metric or relative depth (larger = farther) via its disparity."""
    depth = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    if mask is not None:
        valid &= np.asarray(mask, dtype=bool)
    disp = np.where(valid, 1.0 / np.where(valid, depth, 1.0), np.nan)
    return colorize_disparity(disp, valid)
