"""Point pairs to vote on: random pairs plus pairs where depth ordering is hard.

DA-2K style judging asks "which of these two pixels is closer?". Random pairs are mostly easy
(far apart, very different depths), so a share of the pairs is drawn where experts are likely
to disagree: two points on the same image row (no "lower is nearer" cue) and two points on
either side of a predicted depth edge (along the gradient of the experts' mean log-disparity).

Sampling is vectorised per image and seeded per (seed, image id), so an image gets the same
pairs whatever other images are sampled with it and in whatever order.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

KIND_NAMES: tuple[str, ...] = ("random", "same_row", "edge", "annotated")
KIND_RANDOM, KIND_SAME_ROW, KIND_EDGE, KIND_ANNOTATED = range(4)

_MAX_ROUNDS = 8  # rejection-sampling rounds before accepting fewer pairs than asked


class PairConfig(BaseModel):
    """How many pairs per image, and how many of them are "hard"."""

    model_config = ConfigDict(extra="forbid")

    pairs_per_image: int = Field(256, ge=1, description="pairs sampled per image")
    hard_fraction: float = Field(
        0.5, ge=0.0, le=1.0, description="share of same-row and depth-edge pairs"
    )
    same_row_share: float = Field(
        0.5, ge=0.0, le=1.0, description="share of the hard pairs on one row (rest: edges)"
    )
    min_distance: float = Field(8.0, ge=1.0, description="minimum pixel distance in a pair")
    edge_quantile: float = Field(
        0.9, ge=0.0, lt=1.0, description="gradient quantile above which a pixel is an edge"
    )
    seed: int = Field(0, ge=0)


@dataclass(frozen=True)
class PointPairs:
    """P point pairs over a set of images; points are integer (h, w) pixel coordinates."""

    image_index: np.ndarray  # (P,) int64, index into the image list
    point1: np.ndarray  # (P, 2) int64 (h, w)
    point2: np.ndarray  # (P, 2) int64 (h, w)
    kind: np.ndarray  # (P,) int8, index into KIND_NAMES

    def __post_init__(self) -> None:
        n = len(self.image_index)
        if self.point1.shape != (n, 2) or self.point2.shape != (n, 2) or self.kind.shape != (n,):
            raise ValueError(
                "PointPairs: image_index (P,), point1/point2 (P, 2) and kind (P,) must agree; "
                f"got {self.image_index.shape}, {self.point1.shape}, {self.point2.shape}, "
                f"{self.kind.shape}"
            )

    def __len__(self) -> int:
        return len(self.image_index)

    @classmethod
    def build(cls, image_index, point1, point2, kind=KIND_ANNOTATED) -> PointPairs:
        """Build from array-likes, casting to the canonical dtypes."""
        image_index = np.asarray(image_index, dtype=np.int64).reshape(-1)
        p1 = np.asarray(point1, dtype=np.int64).reshape(-1, 2)
        p2 = np.asarray(point2, dtype=np.int64).reshape(-1, 2)
        kinds = np.broadcast_to(np.asarray(kind, dtype=np.int8), image_index.shape).copy()
        return cls(image_index, p1, p2, kinds)

    @classmethod
    def empty(cls) -> PointPairs:
        return cls.build(np.zeros(0), np.zeros((0, 2)), np.zeros((0, 2)))

    @classmethod
    def concat(cls, parts: Sequence[PointPairs]) -> PointPairs:
        if not parts:
            return cls.empty()
        return cls(
            np.concatenate([p.image_index for p in parts]),
            np.concatenate([p.point1 for p in parts]),
            np.concatenate([p.point2 for p in parts]),
            np.concatenate([p.kind for p in parts]),
        )

    def select(self, index) -> PointPairs:
        """Subset by boolean mask or integer index."""
        return PointPairs(
            self.image_index[index], self.point1[index], self.point2[index], self.kind[index]
        )

    def kind_names(self) -> np.ndarray:
        return np.asarray(KIND_NAMES, dtype=object)[self.kind]


def log_disparity_guide(expert_maps: Sequence[np.ndarray]) -> np.ndarray:
    """Mean over experts of log(disparity / median): where its gradient is large, the experts
    see a depth edge. Dividing by the median makes experts of different scales comparable."""
    logs = []
    for disp in expert_maps:
        d = np.asarray(disp, dtype=np.float32)
        finite = np.isfinite(d) & (d > 0)
        med = float(np.median(d[finite])) if finite.any() else 1.0
        med = med if med > 0 else 1.0
        logs.append(np.log(np.maximum(np.where(finite, d, med) / med, 1e-6)))
    return np.mean(logs, axis=0).astype(np.float32)


def _image_rng(seed: int, image_id: str | None, index: int) -> np.random.Generator:
    key = zlib.crc32(image_id.encode("utf-8")) if image_id is not None else index
    return np.random.default_rng([seed, key])


def _far_enough(p1: np.ndarray, p2: np.ndarray, min_distance: float) -> np.ndarray:
    d2 = ((p1 - p2).astype(np.float64) ** 2).sum(axis=1)
    return d2 >= min_distance**2


def _collect(draw, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Rejection sampling: call draw(k) -> accepted (p1, p2) until n pairs or _MAX_ROUNDS."""
    got1, got2 = [np.zeros((0, 2), np.int64)], [np.zeros((0, 2), np.int64)]
    have = 0
    for _ in range(_MAX_ROUNDS):
        if have >= n:
            break
        p1, p2 = draw(2 * (n - have) + 16)
        got1.append(p1)
        got2.append(p2)
        have += len(p1)
    return np.concatenate(got1)[: max(n, 0)], np.concatenate(got2)[: max(n, 0)]


def _random_pairs(rng, cand, width, n, min_distance):
    """n pairs of valid pixels at least min_distance apart (fewer if that is impossible)."""

    def draw(k):
        f1 = cand[rng.integers(len(cand), size=k)]
        f2 = cand[rng.integers(len(cand), size=k)]
        p1 = np.stack([f1 // width, f1 % width], axis=1)
        p2 = np.stack([f2 // width, f2 % width], axis=1)
        keep = _far_enough(p1, p2, min_distance)
        return p1[keep], p2[keep]

    return _collect(draw, n)


def _same_row_pairs(rng, cand, width, height, n, min_distance):
    """n pairs on one row. `cand` is sorted (row-major), so each row's valid pixels form a
    contiguous slice and the partner is drawn from the first point's row in one gather."""
    rows = cand // width
    row_start = np.searchsorted(rows, np.arange(height))
    row_count = np.bincount(rows, minlength=height)

    def draw(k):
        f1 = cand[rng.integers(len(cand), size=k)]
        r = f1 // width
        offset = np.minimum((rng.random(k) * row_count[r]).astype(np.int64), row_count[r] - 1)
        f2 = cand[row_start[r] + offset]
        p1 = np.stack([r, f1 % width], axis=1)
        p2 = np.stack([f2 // width, f2 % width], axis=1)
        keep = _far_enough(p1, p2, min_distance)
        return p1[keep], p2[keep]

    return _collect(draw, n)


def _edge_pairs(rng, valid, guide, n, min_distance, quantile):
    """n pairs straddling depth edges: centred on a high-gradient pixel, the two points sit
    on either side of it along the gradient direction (in random order)."""
    height, width = valid.shape
    gy, gx = np.gradient(guide.astype(np.float64))
    mag = np.hypot(gy, gx)
    usable = valid & np.isfinite(mag) & (mag > 0)
    if not usable.any() or n <= 0:
        return np.zeros((0, 2), np.int64), np.zeros((0, 2), np.int64)
    edges = np.flatnonzero(usable & (mag >= np.quantile(mag[usable], quantile)))
    half_min = int(np.ceil(min_distance / 2.0))

    def inside(p):
        return (p[:, 0] >= 0) & (p[:, 0] < height) & (p[:, 1] >= 0) & (p[:, 1] < width)

    def draw(k):
        c = edges[rng.integers(len(edges), size=k)]
        ch, cw = c // width, c % width
        uy, ux = gy.flat[c] / mag.flat[c], gx.flat[c] / mag.flat[c]
        half = half_min + rng.integers(0, max(half_min, 2), size=k)
        p1 = np.stack([np.rint(ch + half * uy), np.rint(cw + half * ux)], 1).astype(np.int64)
        p2 = np.stack([np.rint(ch - half * uy), np.rint(cw - half * ux)], 1).astype(np.int64)
        keep = inside(p1) & inside(p2)
        p1, p2 = p1[keep], p2[keep]
        keep = valid[p1[:, 0], p1[:, 1]] & valid[p2[:, 0], p2[:, 1]]
        keep &= _far_enough(p1, p2, min_distance)
        p1, p2 = p1[keep], p2[keep]
        swap = (rng.random(len(p1)) < 0.5)[:, None]
        return np.where(swap, p2, p1), np.where(swap, p1, p2)

    return _collect(draw, n)


def sample_image_pairs(
    shape: tuple[int, int],
    config: PairConfig,
    rng: np.random.Generator,
    valid: np.ndarray | None = None,
    guide: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs for one image -> (point1 (P,2), point2 (P,2), kind (P,)).

    Without a guide there are no edge pairs: all hard pairs are same-row pairs. A shortfall of
    hard pairs (no edges, narrow valid rows) is filled with random pairs; an image with too few
    valid pixels far enough apart yields fewer than `pairs_per_image` pairs.
    """
    height, width = int(shape[0]), int(shape[1])
    valid = np.ones((height, width), bool) if valid is None else np.asarray(valid, bool)
    if valid.shape != (height, width):
        raise ValueError(f"valid mask shape {valid.shape} != image shape {(height, width)}")
    guide = None if guide is None else np.asarray(guide, np.float64)
    cand = np.flatnonzero(valid)
    empty = np.zeros((0, 2), np.int64)
    if len(cand) < 2:
        return empty, empty, np.zeros(0, np.int8)

    n_hard = round(config.pairs_per_image * config.hard_fraction)
    n_row = n_hard if guide is None else round(n_hard * config.same_row_share)
    n_edge = n_hard - n_row
    row1, row2 = _same_row_pairs(rng, cand, width, height, n_row, config.min_distance)
    if n_edge > 0:
        if guide.shape != (height, width):
            raise ValueError(f"guide shape {guide.shape} != image shape {(height, width)}")
        edge1, edge2 = _edge_pairs(
            rng, valid, guide, n_edge, config.min_distance, config.edge_quantile
        )
    else:
        edge1 = edge2 = empty
    n_random = config.pairs_per_image - len(row1) - len(edge1)
    rand1, rand2 = _random_pairs(rng, cand, width, n_random, config.min_distance)
    kinds = np.concatenate(
        [
            np.full(len(rand1), KIND_RANDOM, np.int8),
            np.full(len(row1), KIND_SAME_ROW, np.int8),
            np.full(len(edge1), KIND_EDGE, np.int8),
        ]
    )
    return (
        np.concatenate([rand1, row1, edge1]).astype(np.int64),
        np.concatenate([rand2, row2, edge2]).astype(np.int64),
        kinds,
    )


def sample_pairs(
    shapes: Sequence[tuple[int, int]],
    config: PairConfig,
    image_ids: Sequence[str] | None = None,
    valid_masks: Sequence[np.ndarray | None] | None = None,
    guides: Sequence[np.ndarray | None] | None = None,
) -> PointPairs:
    """Seeded pairs for every image.

    shapes: (H, W) per image. image_ids: seed each image by its id (order-independent);
    without ids the position in the list is used. valid_masks: only these pixels are used (pass
    the ground-truth mask when there is ground truth). guides: per-image log-disparity guide
    (see `log_disparity_guide`) for the depth-edge pairs.
    """
    n = len(shapes)
    for name, seq in (("image_ids", image_ids), ("valid_masks", valid_masks), ("guides", guides)):
        if seq is not None and len(seq) != n:
            raise ValueError(f"sample_pairs: {name} has {len(seq)} entries for {n} images")
    parts = []
    for i, shape in enumerate(shapes):
        rng = _image_rng(config.seed, None if image_ids is None else str(image_ids[i]), i)
        valid = None if valid_masks is None else valid_masks[i]
        guide = None if guides is None else guides[i]
        p1, p2, kind = sample_image_pairs(tuple(shape), config, rng, valid, guide)
        parts.append(PointPairs(np.full(len(p1), i, np.int64), p1, p2, kind))
    return PointPairs.concat(parts)
