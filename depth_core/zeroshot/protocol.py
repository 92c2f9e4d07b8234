"""The zero-shot evaluation protocol of the Depth Anything papers, one definition per benchmark.

Scoring follows MiDaS / Depth Anything: the prediction (affine-invariant disparity) is made on
the whole image at the model's resolution and resized to the ground truth; the evaluated pixels
are those inside the benchmark's crop whose ground-truth depth is valid and within its range;
a least-squares scale and shift is fitted per image in disparity space against 1/gt, the
aligned disparity is clamped to the range and inverted; AbsRel and delta1 are computed per
image, then averaged over images (`depth_core.metrics.evaluate_disparity` does the maths).

The ranges and crops are the ones the field's evaluation code applies (cited per benchmark);
they are where reproduced numbers most often go wrong, so they live here and nowhere else.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from depth_core import metrics
from depth_core.inference import resize_disparity

Crop = Callable[[int, int], tuple[slice, slice]]


def eigen_crop_nyu(height: int, width: int) -> tuple[slice, slice]:
    """Eigen et al. (NIPS 2014)'s NYUv2 crop: rows 45:471, columns 41:601 of the 480x640 frame
    (scaled proportionally for another resolution)."""
    return (
        slice(round(45 * height / 480), round(471 * height / 480)),
        slice(round(41 * width / 640), round(601 * width / 640)),
    )


def garg_crop(height: int, width: int) -> tuple[slice, slice]:
    """Garg et al. (ECCV 2016)'s KITTI crop, as fractions of the ground truth's size (the
    fractions of the BTS / AdaBins / Marigold evaluation code)."""
    return (
        slice(int(0.40810811 * height), int(0.99189189 * height)),
        slice(int(0.03594771 * width), int(0.96405229 * width)),
    )


@dataclass(frozen=True)
class Protocol:
    """Where and how one benchmark is scored. `max_depth` None: no cap (the aligned disparity
    is clamped at each image's farthest valid depth instead)."""

    min_depth: float
    max_depth: float | None
    crop: Crop | None
    source: str  # where the range and crop come from

    def evaluation_mask(self, depth: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """The pixels scored: declared valid, finite, within (min_depth, max_depth], in the crop."""
        depth = np.asarray(depth, dtype=np.float32)
        with np.errstate(invalid="ignore"):
            mask = np.asarray(valid, dtype=bool) & np.isfinite(depth) & (depth > self.min_depth)
            if self.max_depth is not None:
                mask &= depth <= self.max_depth
        if self.crop is not None:
            rows, cols = self.crop(*depth.shape)
            cropped = np.zeros_like(mask)
            cropped[rows, cols] = mask[rows, cols]
            mask = cropped
        return mask

    def score(
        self, disparity: np.ndarray, depth: np.ndarray, valid: np.ndarray
    ) -> dict[str, float] | None:
        """AbsRel and delta1 of one prediction (any resolution; resized to the ground truth),
        or None when no pixel is scored."""
        mask = self.evaluation_mask(depth, valid)
        if not mask.any():
            return None
        pred = torch.as_tensor(np.asarray(disparity, dtype=np.float32))
        if tuple(pred.shape) != tuple(mask.shape):
            pred = torch.from_numpy(resize_disparity(pred, tuple(mask.shape)))
        gt = torch.as_tensor(np.where(mask, np.asarray(depth, dtype=np.float32), 0.0))
        result = metrics.evaluate_disparity(
            pred[None],
            gt[None],
            torch.from_numpy(mask)[None],
            max_depth=self.max_depth,
            min_depth=self.min_depth,
            n_pairs=0,
        )
        return {"abs_rel": float(result["abs_rel"][0]), "delta1": float(result["delta1"][0])}


# Ranges: Marigold's evaluation configs (prs-eth/Marigold, src/dataset/*_dataset.py), which follow
# the Depth Anything / MiDaS protocol; Sintel's 72 m cap is MiDaS's (Ranftl et al., TPAMI 2022).
PROTOCOLS: dict[str, Protocol] = {
    "nyu": Protocol(1e-3, 10.0, eigen_crop_nyu, "NYUv2 test (654), Eigen crop, 1e-3..10 m"),
    "kitti": Protocol(1e-3, 80.0, garg_crop, "KITTI Eigen test, Garg crop, 1e-3..80 m"),
    "diode": Protocol(0.6, 350.0, None, "DIODE val (indoor + outdoor), 0.6..350 m"),
    "eth3d": Protocol(1e-5, None, None, "ETH3D high-res DSLR, > 1e-5 m, no cap"),
    "sintel": Protocol(1e-3, 72.0, None, "MPI Sintel training (final pass), 1e-3..72 m"),
    "scannet": Protocol(1e-3, 10.0, None, "ScanNet test frames, 1e-3..10 m"),
}
