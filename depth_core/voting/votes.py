"""Experts judge point pairs; verdicts, majority vote, accuracy and per-expert confusion.

A vote is an int8: POINT1 (1) or POINT2 (2) names the point the expert judges closer (larger
disparity = closer); TIE (0) means equal disparities (or a non-finite value), i.e. no opinion.
A pair is *consistent* when every expert casts the same vote (this includes the degenerate
case where all experts tie) and a *disagreement* otherwise, so one tying expert among deciding
ones makes a disagreement.

Everything is vectorised over pairs: values are gathered with one flat index per point, so
judging costs a few array passes whatever the number of images.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from depth_core.voting.pairs import PointPairs

TIE, POINT1, POINT2 = 0, 1, 2

# Ground-truth depths closer than this relative difference give no order (pair skipped):
# |d1 - d2| <= GT_REL_TOL * max(d1, d2). Sensor noise makes such orders a coin flip.
GT_REL_TOL = 0.01

Disparities = np.ndarray | Sequence[Sequence[np.ndarray]]


def _check_points(pairs: PointPairs, heights: np.ndarray, widths: np.ndarray) -> None:
    """Raise naming the first pair whose point lies outside its image."""
    if not len(pairs):
        return
    p1, p2 = pairs.point1, pairs.point2
    if (
        min(p1.min(), p2.min()) >= 0
        and max(p1[:, 0].max(), p2[:, 0].max()) < heights.min()
        and max(p1[:, 1].max(), p2[:, 1].max()) < widths.min()
    ):
        return  # fast path: every point is inside the smallest image
    h = heights[pairs.image_index]
    w = widths[pairs.image_index]
    bad = np.zeros(len(pairs), bool)
    for p in (pairs.point1, pairs.point2):
        bad |= (p[:, 0] < 0) | (p[:, 0] >= h) | (p[:, 1] < 0) | (p[:, 1] >= w)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"pair {i} (image {int(pairs.image_index[i])}, point1 {pairs.point1[i].tolist()}, "
            f"point2 {pairs.point2[i].tolist()}) lies outside the image of shape "
            f"{(int(h[i]), int(w[i]))}"
        )


def gather_pair_values(
    disparities: Disparities, pairs: PointPairs
) -> tuple[np.ndarray, np.ndarray]:
    """Each expert's values at both points of every pair -> (values1, values2), each (E, P).

    disparities: an array (E, N, H, W), or per expert a list of N (H_i, W_i) maps (images of
    different sizes).
    """
    if len(pairs) and (pairs.image_index.min() < 0):
        raise ValueError("pair image_index must be >= 0")
    if isinstance(disparities, np.ndarray):
        if disparities.ndim != 4:
            raise ValueError(f"disparities array must be (E, N, H, W), got {disparities.shape}")
        n_exp, n_img, height, width = disparities.shape
        if len(pairs) and pairs.image_index.max() >= n_img:
            raise ValueError(f"pair refers to image {pairs.image_index.max()} of {n_img}")
        _check_points(pairs, np.full(n_img, height), np.full(n_img, width))
        flat = disparities.reshape(n_exp, -1)
        base = pairs.image_index * (height * width)
        f1 = base + pairs.point1[:, 0] * width + pairs.point1[:, 1]
        f2 = base + pairs.point2[:, 0] * width + pairs.point2[:, 1]
        v1 = np.empty((n_exp, len(pairs)), flat.dtype)
        v2 = np.empty((n_exp, len(pairs)), flat.dtype)
        for e in range(n_exp):  # one 1-D gather per expert beats a 2-D take
            np.take(flat[e], f1, out=v1[e])
            np.take(flat[e], f2, out=v2[e])
        return v1, v2

    experts = [list(maps) for maps in disparities]
    if not experts:
        raise ValueError("disparities: no expert maps given")
    n_exp, n_img = len(experts), len(experts[0])
    for e, maps in enumerate(experts):
        if len(maps) != n_img:
            raise ValueError(f"expert {e} has {len(maps)} maps, expert 0 has {n_img}")
    if len(pairs) and pairs.image_index.max() >= n_img:
        raise ValueError(f"pair refers to image {pairs.image_index.max()} of {n_img}")
    shapes = np.zeros((n_img, 2), np.int64)
    for i, m in enumerate(experts[0]):
        if np.ndim(m) != 2:
            raise ValueError(f"expert 0 image {i}: expected an (H, W) map, got {np.shape(m)}")
        shapes[i] = np.shape(m)
    for e, maps in enumerate(experts):
        for i, m in enumerate(maps):
            if np.shape(m) != tuple(shapes[i]):
                raise ValueError(
                    f"expert {e} image {i}: map shape {np.shape(m)}, expected "
                    f"{tuple(int(x) for x in shapes[i])} like expert 0"
                )
    if n_img:
        _check_points(pairs, shapes[:, 0], shapes[:, 1])
    dtype = np.result_type(*[np.asarray(m).dtype for maps in experts for m in maps] or [np.float32])
    v1 = np.empty((n_exp, len(pairs)), dtype)
    v2 = np.empty((n_exp, len(pairs)), dtype)
    order = np.argsort(pairs.image_index, kind="stable")
    bounds = np.searchsorted(pairs.image_index[order], np.arange(n_img + 1))
    for i in range(n_img):
        sel = order[bounds[i] : bounds[i + 1]]
        if not len(sel):
            continue
        width = shapes[i, 1]
        f1 = pairs.point1[sel, 0] * width + pairs.point1[sel, 1]
        f2 = pairs.point2[sel, 0] * width + pairs.point2[sel, 1]
        for e in range(n_exp):
            flat = np.asarray(experts[e][i]).reshape(-1)
            v1[e, sel] = flat[f1]
            v2[e, sel] = flat[f2]
    return v1, v2


def votes_from_values(values1: np.ndarray, values2: np.ndarray) -> np.ndarray:
    """Larger disparity is closer: 1 if values1 > values2, 2 if smaller, 0 otherwise (equal or
    NaN: comparisons with NaN are false, so a non-finite value abstains)."""
    # bool -> int8 views avoid copies; 1 * (v1 > v2) + 2 * (v1 < v2) in {0, 1, 2}
    greater = np.greater(values1, values2).view(np.int8)
    less = np.less(values1, values2).view(np.int8)
    return greater + (less << 1)


def judge(disparities: Disparities, pairs: PointPairs) -> np.ndarray:
    """Every expert's vote on every pair -> (E, P) int8 in {0 (tie), 1, 2}."""
    return votes_from_values(*gather_pair_values(disparities, pairs))


def is_consistent(votes: np.ndarray) -> np.ndarray:
    """(P,) bool: all experts cast the same vote."""
    votes = np.asarray(votes)
    if votes.shape[0] < 2:
        raise ValueError(f"voting needs at least 2 experts, got {votes.shape[0]}")
    return (votes == votes[:1]).all(axis=0)


def robust_scales(disparities: Disparities) -> list[list[float]]:
    """Per expert and image: mean absolute deviation from the median of the finite values
    (1.0 when flat). Dividing by it makes disparity differences comparable across experts of
    different (affine-invariant) scales."""
    if isinstance(disparities, np.ndarray):
        disparities = [list(maps) for maps in disparities]
    scales = []
    for maps in disparities:
        row = []
        for m in maps:
            v = np.asarray(m, np.float64)
            v = v[np.isfinite(v)]
            s = float(np.mean(np.abs(v - np.median(v)))) if v.size else 0.0
            row.append(s if s > 0 else 1.0)
        scales.append(row)
    return scales


def pair_margins(disparities: Disparities, pairs: PointPairs) -> np.ndarray:
    """(E, P) signed confidence: (d1 - d2) / robust scale of that expert on that image.
    Its sign is the vote; non-finite differences become 0."""
    v1, v2 = gather_pair_values(disparities, pairs)
    scales = np.asarray(robust_scales(disparities), np.float64).reshape(len(v1), -1)
    margins = (v1.astype(np.float64) - v2) / scales[:, pairs.image_index]
    return np.where(np.isfinite(margins), margins, 0.0)


def majority_vote(votes: np.ndarray, margins: np.ndarray | None = None) -> np.ndarray:
    """(P,) int8 majority of the deciding (non-tie) votes.

    A tied vote (e.g. 2 against 2) is broken by the sign of the experts' summed margins (see
    `pair_margins`): the side the experts are more confident about wins. Without margins, or
    when they sum to exactly 0, the result is TIE. The rule ignores expert order, so the
    majority does not depend on how the experts are listed.
    """
    votes = np.asarray(votes)
    c1 = (votes == POINT1).sum(axis=0)
    c2 = (votes == POINT2).sum(axis=0)
    out = np.zeros(votes.shape[1], np.int8)
    out[c1 > c2] = POINT1
    out[c2 > c1] = POINT2
    if margins is not None:
        total = np.asarray(margins).sum(axis=0)
        tied = c1 == c2
        out[tied & (total > 0)] = POINT1
        out[tied & (total < 0)] = POINT2
    return out


def ground_truth_order(
    gt_depth: np.ndarray | Sequence[np.ndarray],
    gt_mask: np.ndarray | Sequence[np.ndarray] | None,
    pairs: PointPairs,
    rel_tol: float = GT_REL_TOL,
) -> np.ndarray:
    """(P,) int8: 1 or 2 for the point with the smaller ground-truth depth, 0 where unknown
    (either point invalid, or depths within `rel_tol` relative difference)."""
    if isinstance(gt_depth, np.ndarray):
        depth = gt_depth[None]
    else:
        depth = [list(gt_depth)]
    d1, d2 = (v[0].astype(np.float64) for v in gather_pair_values(depth, pairs))
    ok = np.isfinite(d1) & np.isfinite(d2) & (d1 > 0) & (d2 > 0)
    if gt_mask is not None:
        mask = gt_mask[None] if isinstance(gt_mask, np.ndarray) else [list(gt_mask)]
        m1, m2 = gather_pair_values(mask, pairs)
        ok &= m1[0].astype(bool) & m2[0].astype(bool)
    with np.errstate(invalid="ignore"):
        ok &= np.abs(d1 - d2) > rel_tol * np.maximum(d1, d2)
    order = np.zeros(len(pairs), np.int8)
    order[ok & (d1 < d2)] = POINT1
    order[ok & (d1 > d2)] = POINT2
    return order


def pairwise_agreement(votes: np.ndarray) -> np.ndarray:
    """(E, E) fraction of pairs on which experts i and j cast the same vote."""
    votes = np.asarray(votes)
    if votes.shape[1] == 0:
        return np.eye(votes.shape[0])
    one_hot = np.stack([votes == v for v in (TIE, POINT1, POINT2)]).astype(np.float64)
    same = np.einsum("vip,vjp->ij", one_hot, one_hot)
    return same / votes.shape[1]


def lone_dissents(votes: np.ndarray) -> np.ndarray:
    """(E, P) bool: expert i differs while all the other experts cast one common vote.
    With two experts every disagreement makes both experts lone dissenters."""
    votes = np.asarray(votes)
    n_exp = votes.shape[0]
    out = np.zeros(votes.shape, bool)
    for i in range(n_exp):
        others = np.delete(votes, i, axis=0)
        agree = (others == others[:1]).all(axis=0)
        out[i] = agree & (votes[i] != others[0])
    return out


def _rate(hits: np.ndarray) -> float | None:
    return float(hits.mean()) if hits.size else None


def agreement_metrics(
    votes: np.ndarray,
    expert_names: Sequence[str],
    gt_order: np.ndarray | None = None,
    margins: np.ndarray | None = None,
) -> dict[str, float | int]:
    """Flat, JSON-ready metrics of one vote.

    Always: n_experts, n_pairs, n_consistent, n_disagreement, n_all_tie, agreement_rate,
    dissent_rate/<e> (vote differs from the majority), lone_dissent_rate/<e>,
    tie_rate/<e>, pairwise_agreement/<a>/<b> (a < b alphabetically).
    With ground truth (pairs with gt_order != 0): n_pairs_gt, accuracy/<e>, accuracy_majority,
    accuracy_consistent (the common vote on consistent pairs), accuracy_disagreement (the
    majority vote on disagreement pairs), accuracy_disagreement/<e>. A tie or undecided
    majority counts as wrong. Keys whose subset is empty are omitted (never NaN or null).
    """
    votes = np.asarray(votes)
    names = [str(n) for n in expert_names]
    if votes.ndim != 2 or votes.shape[0] != len(names):
        raise ValueError(f"votes shape {votes.shape} does not match {len(names)} expert names")
    consistent = is_consistent(votes)
    majority = majority_vote(votes, margins)
    n_pairs = int(votes.shape[1])
    metrics: dict[str, float | int] = {
        "n_experts": len(names),
        "n_pairs": n_pairs,
        "n_consistent": int(consistent.sum()),
        "n_disagreement": int((~consistent).sum()),
        "n_all_tie": int((consistent & (votes[0] == TIE)).sum()),
    }
    if n_pairs:
        metrics["agreement_rate"] = float(consistent.mean())
    lone = lone_dissents(votes)
    for i, name in enumerate(names):
        if n_pairs:
            metrics[f"dissent_rate/{name}"] = float((votes[i] != majority).mean())
            metrics[f"lone_dissent_rate/{name}"] = float(lone[i].mean())
            metrics[f"tie_rate/{name}"] = float((votes[i] == TIE).mean())
    agree = pairwise_agreement(votes)
    for i in range(len(names)):
        for j in range(i + 1, len(names)):
            if n_pairs:  # names sorted in the key so expert order does not change the keys
                a, b = sorted((names[i], names[j]))
                metrics[f"pairwise_agreement/{a}/{b}"] = float(agree[i, j])

    if gt_order is not None:
        gt_order = np.asarray(gt_order)
        known = gt_order != TIE
        metrics["n_pairs_gt"] = int(known.sum())
        metrics["n_consistent_gt"] = int((known & consistent).sum())
        metrics["n_disagreement_gt"] = int((known & ~consistent).sum())
        candidates = {
            "accuracy_majority": majority[known] == gt_order[known],
            "accuracy_consistent": votes[0][known & consistent] == gt_order[known & consistent],
            "accuracy_disagreement": majority[known & ~consistent] == gt_order[known & ~consistent],
        }
        for i, name in enumerate(names):
            candidates[f"accuracy/{name}"] = votes[i][known] == gt_order[known]
            sel = known & ~consistent
            candidates[f"accuracy_disagreement/{name}"] = votes[i][sel] == gt_order[sel]
        for key, hits in candidates.items():
            value = _rate(hits)
            if value is not None:
                metrics[key] = value
    return metrics
