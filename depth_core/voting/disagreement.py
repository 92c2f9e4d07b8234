"""Per-pixel disagreement between experts: where their depth maps tell different stories.

Experts predict affine-invariant disparity, so raw maps cannot be compared directly. Each
expert is fitted (least squares, scale and shift, in disparity space) to the experts' common
reference; the map is the per-pixel standard deviation of the aligned experts divided by the
reference's spread, so 0 means full agreement and 1 means the experts differ as much as the
scene's depth varies. The fit is iterated (reference = mean of the aligned experts).

The scale is clamped at 0: least squares would happily flip an inverted (far = large) expert
into agreement, hiding exactly the failure the vote must expose; clamped, an inverted expert
contributes a flat map and shows up as disagreement wherever the scene has depth.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

_ITERATIONS = 3


def _standardise(d: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Sign-preserving (median / mean absolute deviation) normalisation for the first reference."""
    med = np.median(d[valid])
    mad = np.mean(np.abs(d[valid] - med))
    return (d - med) / (mad if mad > 0 else 1.0)


def _fit_nonnegative(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Least-squares y ~ s * x + t with s >= 0 (s = 0 -> t = mean(y))."""
    xm, ym = x.mean(), y.mean()
    var = np.mean((x - xm) ** 2)
    s = float(np.mean((x - xm) * (y - ym)) / var) if var > 0 else 0.0
    s = max(s, 0.0)
    return s, float(ym - s * xm)


def disagreement_map(
    expert_maps: Sequence[np.ndarray], mask: np.ndarray | None = None
) -> np.ndarray:
    """(H, W) float32 normalised spread of the aligned experts; NaN on invalid pixels
    (outside `mask` or non-finite in any expert)."""
    maps = [np.asarray(m, np.float64) for m in expert_maps]
    if len(maps) < 2:
        raise ValueError(f"a disagreement map needs at least 2 experts, got {len(maps)}")
    shape = maps[0].shape
    if len(shape) != 2 or any(m.shape != shape for m in maps):
        raise ValueError(f"expert maps must share one (H, W) shape, got {[m.shape for m in maps]}")
    valid = np.all([np.isfinite(m) for m in maps], axis=0)
    if mask is not None:
        if np.shape(mask) != shape:
            raise ValueError(f"mask shape {np.shape(mask)} != map shape {shape}")
        valid &= np.asarray(mask, bool)
    out = np.full(shape, np.nan, np.float32)
    if valid.sum() < 2:
        return out
    values = [m[valid] for m in maps]
    reference = np.mean([_standardise(v, np.ones(v.shape, bool)) for v in values], axis=0)
    for _ in range(_ITERATIONS):
        aligned = []
        for v in values:
            s, t = _fit_nonnegative(v, reference)
            aligned.append(s * v + t)
        aligned = np.stack(aligned)
        reference = aligned.mean(axis=0)
    spread = reference.std()
    spread = spread if spread > 0 else 1.0
    out[valid] = (aligned.std(axis=0) / spread).astype(np.float32)
    return out


# white (agree) -> yellow -> orange -> red -> dark red (strong disagreement)
_KEYS = np.array(
    [[1.0, 1.0, 1.0], [1.0, 0.93, 0.45], [0.98, 0.6, 0.2], [0.85, 0.15, 0.1], [0.4, 0.0, 0.05]],
    np.float32,
)
_INVALID_RGB = np.array([140, 140, 140], np.uint8)


def disagreement_to_rgb(dmap: np.ndarray, vmax: float = 0.5) -> np.ndarray:
    """uint8 (H, W, 3) picture on a fixed [0, vmax] scale (comparable across images);
    invalid pixels grey."""
    if vmax <= 0:
        raise ValueError(f"vmax must be > 0, got {vmax}")
    d = np.asarray(dmap, np.float32)
    valid = np.isfinite(d)
    pos = np.clip(np.where(valid, d, 0.0) / vmax, 0.0, 1.0) * (len(_KEYS) - 1)
    lo = np.floor(pos).astype(np.int64)
    hi = np.minimum(lo + 1, len(_KEYS) - 1)
    frac = (pos - lo)[..., None]
    rgb = ((_KEYS[lo] * (1 - frac) + _KEYS[hi] * frac) * 255.0 + 0.5).astype(np.uint8)
    rgb[~valid] = _INVALID_RGB
    return rgb
