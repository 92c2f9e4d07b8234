"""The expert-agreement product: vote, score, and write every output of the report.

`run_agreement` takes each expert's disparity maps (arrays, never models), samples (or takes)
point pairs, lets every expert judge them, and writes to `out_dir`:

- pairs.parquet: one row per pair (image id, coordinates, pair kind, each expert's vote,
  verdict, majority vote, ground-truth order where known; votes 1/2 = point1/point2 closer,
  0 = tie; gt_closer is null where unknown).
- review_queue.json: the disagreement pairs in the DA-2K annotations.json format, closer_point =
  the experts' majority vote (provisional), most contested pairs first within an image.
  review_queue.meta.json says that it needs review and carries each expert's vote per entry.
- auto_labels.json: consistent pairs in the same format (pairs where all experts tie have no
  order and are left out).
- metrics.json: flat numbers for DVC (see `votes.agreement_metrics`); accuracy keys exist only
  where ground truth exists, and a key whose subset is empty is omitted (never NaN or null).
- report.html (self-contained), summary.md (for the Dagster UI), disagreement_maps/*.png (one
  per image), most_contested_pairs.png and most_contested_disagreement.png.

Every file is written atomically.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field

from depth_core.atomic_io import atomic_write, write_json
from depth_core.voting.da2k import pairs_to_annotations, write_annotations
from depth_core.voting.disagreement import disagreement_map, disagreement_to_rgb
from depth_core.voting.pairs import (
    KIND_NAMES,
    PairConfig,
    PointPairs,
    log_disparity_guide,
    sample_pairs,
)
from depth_core.voting.report import (
    build_panel,
    png_bytes,
    render_html,
    render_markdown,
    resize,
)
from depth_core.voting.votes import (
    GT_REL_TOL,
    POINT1,
    POINT2,
    TIE,
    agreement_metrics,
    ground_truth_order,
    is_consistent,
    judge,
    majority_vote,
    pair_margins,
    pairwise_agreement,
)

PAIRS_FILE = "pairs.parquet"
REVIEW_FILE = "review_queue.json"
REVIEW_META_FILE = "review_queue.meta.json"
AUTO_LABELS_FILE = "auto_labels.json"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.html"
SUMMARY_FILE = "summary.md"
MAPS_DIR = "disagreement_maps"
CONTESTED_PAIRS_PNG = "most_contested_pairs.png"
CONTESTED_MAP_PNG = "most_contested_disagreement.png"

_VOTE_NAMES = {TIE: "tie", POINT1: "point1", POINT2: "point2"}


class AgreementConfig(BaseModel):
    """Knobs of the expert-agreement report."""

    model_config = ConfigDict(extra="forbid")

    pairs: PairConfig = Field(default_factory=PairConfig)
    gt_rel_tol: float = Field(
        GT_REL_TOL, ge=0.0, lt=1.0, description="GT depths this close give no order"
    )
    report_images: int = Field(4, ge=0, description="images shown in the HTML report")
    report_pairs_per_image: int = Field(16, ge=0, description="disagreement pairs drawn")
    disagreement_vmax: float = Field(0.5, gt=0.0, description="disagreement shown as darkest")
    save_disagreement_maps: bool = True


def _validate_inputs(expert_disparities, images, image_ids, gt_depth, gt_mask, pair_labels):
    names = list(expert_disparities)
    if len(names) < 2:
        raise ValueError(f"expert_disparities: voting needs at least 2 experts, got {names}")
    n = len(images)
    if len(image_ids) != n:
        raise ValueError(f"image_ids has {len(image_ids)} entries for {n} images")
    if len(set(map(str, image_ids))) != n:
        raise ValueError("image_ids must be unique")
    for i, img in enumerate(images):
        if np.ndim(img) != 3 or np.shape(img)[2] != 3:
            raise ValueError(f"image {image_ids[i]!r}: expected (H, W, 3), got {np.shape(img)}")
    for name in names:
        maps = expert_disparities[name]
        if len(maps) != n:
            raise ValueError(f"expert {name!r} has {len(maps)} maps for {n} images")
        for i, m in enumerate(maps):
            if np.shape(m) != np.shape(images[i])[:2]:
                raise ValueError(
                    f"expert {name!r}, image {image_ids[i]!r}: disparity shape {np.shape(m)} "
                    f"!= image shape {np.shape(images[i])[:2]}"
                )
    for label, arrays in (("gt_depth", gt_depth), ("gt_mask", gt_mask)):
        if arrays is None:
            continue
        if len(arrays) != n:
            raise ValueError(f"{label} has {len(arrays)} maps for {n} images")
        for i, a in enumerate(arrays):
            if np.shape(a) != np.shape(images[i])[:2]:
                raise ValueError(
                    f"{label}, image {image_ids[i]!r}: shape {np.shape(a)} != "
                    f"image shape {np.shape(images[i])[:2]}"
                )
    if pair_labels is not None and gt_depth is not None:
        raise ValueError("give either pair_labels or gt_depth as ground truth, not both")
    return names


def _resolve_config(config, report_images: int | None) -> AgreementConfig:
    if config is None:
        config = AgreementConfig()
    elif isinstance(config, PairConfig):
        config = AgreementConfig(pairs=config)
    elif not isinstance(config, AgreementConfig):
        raise TypeError(f"config must be AgreementConfig or PairConfig, got {type(config)}")
    if report_images is not None:
        config = AgreementConfig.model_validate(
            {**config.model_dump(), "report_images": report_images}
        )
    return config


def _safe_name(index: int, image_id: str) -> str:
    return f"{index:05d}_" + re.sub(r"[^A-Za-z0-9._-]+", "_", image_id)[-80:] + ".png"


def _write_parquet(path: Path, frame: pd.DataFrame) -> None:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    atomic_write(path, buf.getvalue())


@dataclass(frozen=True)
class _Ballot:
    """The pairs, every expert's vote on them and what the outputs are written from."""

    ids: list[str]
    names: list[str]  # the experts, in vote order
    images: Sequence[np.ndarray]
    maps: list[list[np.ndarray]]  # [expert][image] disparity
    pairs: PointPairs
    votes: np.ndarray  # (experts, pairs): TIE / POINT1 / POINT2
    margins: np.ndarray
    consistent: np.ndarray  # per pair: every expert agrees
    majority: np.ndarray
    gt: np.ndarray | None  # ground-truth order per pair, where known
    disagreement: list[np.ndarray]  # per image: the experts' disagreement map
    mean_disagreement: np.ndarray  # per image, NaN where the map is empty

    def expert_maps(self, image: int) -> list[np.ndarray]:
        return [maps[image] for maps in self.maps]


def _pairs_table(ballot: _Ballot) -> pd.DataFrame:
    pairs = ballot.pairs
    table = {
        "image_id": np.asarray(ballot.ids, dtype=object)[pairs.image_index],
        "image_index": pairs.image_index,
        "h1": pairs.point1[:, 0],
        "w1": pairs.point1[:, 1],
        "h2": pairs.point2[:, 0],
        "w2": pairs.point2[:, 1],
        "kind": pairs.kind_names(),
    }
    for i, name in enumerate(ballot.names):
        table[f"vote/{name}"] = ballot.votes[i]
    table["verdict"] = np.where(ballot.consistent, "consistent", "disagreement")
    table["majority"] = ballot.majority
    frame = pd.DataFrame(table)
    if ballot.gt is not None:
        frame["gt_closer"] = pd.array(np.where(ballot.gt == TIE, None, ballot.gt), dtype="Int8")
    else:
        frame["gt_closer"] = pd.array([None] * len(pairs), dtype="Int8")
    return frame


def _review_queue(ballot: _Ballot):
    """Disagreement pairs, most contested first within each image -> (mapping, meta)."""
    votes, consistent, majority = ballot.votes, ballot.consistent, ballot.majority
    pairs = ballot.pairs
    c1 = (votes == POINT1).sum(axis=0)
    c2 = (votes == POINT2).sum(axis=0)
    contest = np.minimum(c1, c2) + (votes == TIE).sum(axis=0)
    sel = np.flatnonzero(~consistent & (majority != TIE))
    sel = sel[np.lexsort((-contest[sel], pairs.image_index[sel]))]
    sub = pairs.select(sel)
    mapping = pairs_to_annotations(sub, ballot.ids, majority[sel])
    meta_votes: dict[str, list] = {}
    for k, i in enumerate(sel):
        meta_votes.setdefault(str(ballot.ids[sub.image_index[k]]), []).append(
            {name: _VOTE_NAMES[int(votes[e, i])] for e, name in enumerate(ballot.names)}
        )
    meta = {
        "status": "needs_review",
        "format": "DA-2K annotations.json (image path -> list of point pairs)",
        "closer_point": "provisional: the experts' majority vote (ties broken by the experts' "
        "summed normalised disparity margins); a person must confirm or flip it",
        "experts": ballot.names,
        "n_pairs": len(sel),
        "n_undecided_left_out": int((~consistent & (majority == TIE)).sum()),
        "votes": meta_votes,
    }
    return mapping, meta


def run_agreement(
    expert_disparities: Mapping[str, Sequence[np.ndarray]],
    images: Sequence[np.ndarray],
    image_ids: Sequence[str],
    out_dir: str | Path,
    config: AgreementConfig | PairConfig | None = None,
    gt_depth: Sequence[np.ndarray] | np.ndarray | None = None,
    gt_mask: Sequence[np.ndarray] | np.ndarray | None = None,
    pairs: PointPairs | None = None,
    pair_labels: np.ndarray | None = None,
    report_images: int | None = None,
) -> dict[str, float | int]:
    """Vote, score and write all outputs (see module docstring); returns the metrics.

    expert_disparities: expert name -> one (H, W) disparity map per image (>= 2 experts).
    images: uint8 (H, W, 3) per image. image_ids: the key of each image in the DA-2K files
    (normally its path relative to the dataset root). gt_depth / gt_mask: optional ground truth
    (depth, 0 = invalid). pairs: judge these pairs instead of sampling (e.g. from a DA-2K file via
    `da2k.annotations_to_pairs`); pair_labels: their known closer point (1/2, 0 unknown), used
    as ground truth instead of gt_depth. config may be a bare PairConfig (defaults for the
    rest); report_images, when given, overrides config.report_images.
    """
    config = _resolve_config(config, report_images)
    ids = [str(i) for i in image_ids]
    names = _validate_inputs(expert_disparities, images, ids, gt_depth, gt_mask, pair_labels)
    maps = [list(expert_disparities[n]) for n in names]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    if gt_depth is not None and gt_mask is None:
        gt_mask = [np.isfinite(d) & (np.asarray(d) > 0) for d in gt_depth]
    if pairs is None:
        pairs = _sample_pairs(maps, images, ids, config.pairs, gt_depth, gt_mask)
    elif pair_labels is not None and len(pair_labels) != len(pairs):
        raise ValueError(f"pair_labels has {len(pair_labels)} entries for {len(pairs)} pairs")
    if pair_labels is not None:
        gt = np.asarray(pair_labels, np.int8)
    elif gt_depth is not None:
        gt = ground_truth_order(list(gt_depth), list(gt_mask), pairs, config.gt_rel_tol)
    else:
        gt = None
    ballot = _vote(ids, names, images, maps, pairs, gt, gt_mask)

    metrics, kind_rates = _agreement_metrics(ballot)
    _write_vote_files(out, ballot, metrics)
    dmap_rgb = [disagreement_to_rgb(d, config.disagreement_vmax) for d in ballot.disagreement]
    if config.save_disagreement_maps:
        for i, rgb in enumerate(dmap_rgb):
            atomic_write(out / MAPS_DIR / _safe_name(i, ids[i]), png_bytes(rgb))
    _write_report(out, ballot, dmap_rgb, metrics, kind_rates, config)
    return metrics


def _sample_pairs(maps, images, ids, config: PairConfig, gt_depth, gt_mask) -> PointPairs:
    """Pairs drawn where the ground truth is valid (or, without it, where every expert's
    disparity is finite), guided by the experts' log disparity."""
    n_img = len(images)
    if gt_depth is not None:
        valid = [
            np.asarray(m, bool) & np.isfinite(d) & (np.asarray(d) > 0)
            for d, m in zip(gt_depth, gt_mask)
        ]
    elif gt_mask is not None:
        valid = [np.asarray(m, bool) for m in gt_mask]
    else:
        valid = [np.all([np.isfinite(m[i]) for m in maps], axis=0) for i in range(n_img)]
    guides = [log_disparity_guide([m[i] for m in maps]) for i in range(n_img)]
    shapes = [np.shape(img)[:2] for img in images]
    return sample_pairs(shapes, config, ids, valid, guides)


def _vote(ids, names, images, maps, pairs: PointPairs, gt, gt_mask) -> _Ballot:
    """Every expert judges every pair; the per-image disagreement maps come along."""
    votes = judge(maps, pairs)
    margins = pair_margins(maps, pairs)
    dmaps = [
        disagreement_map([m[i] for m in maps], None if gt_mask is None else gt_mask[i])
        for i in range(len(images))
    ]
    per_image = np.array([np.nanmean(d) if np.isfinite(d).any() else np.nan for d in dmaps])
    consistent = is_consistent(votes)
    return _Ballot(
        ids=ids,
        names=names,
        images=images,
        maps=maps,
        pairs=pairs,
        votes=votes,
        margins=margins,
        consistent=consistent,
        majority=majority_vote(votes, margins),
        gt=gt,
        disagreement=dmaps,
        mean_disagreement=per_image,
    )


def _agreement_metrics(ballot: _Ballot) -> tuple[dict, dict[str, tuple[int, float]]]:
    """metrics.json's numbers, and (pairs, agreement rate) per pair kind for the report."""
    metrics = agreement_metrics(ballot.votes, ballot.names, ballot.gt, ballot.margins)
    metrics["n_images"] = len(ballot.images)
    if np.isfinite(ballot.mean_disagreement).any():
        metrics["mean_disagreement"] = float(np.nanmean(ballot.mean_disagreement))
    kind_rates = {}
    for k, kind in enumerate(KIND_NAMES):
        sel = ballot.pairs.kind == k
        if sel.any():
            kind_rates[kind] = (int(sel.sum()), float(ballot.consistent[sel].mean()))
            metrics[f"agreement_rate/{kind}"] = kind_rates[kind][1]
    return metrics, kind_rates


def _write_vote_files(out: Path, ballot: _Ballot, metrics: dict) -> None:
    """pairs.parquet, the review queue and its meta, the auto labels and metrics.json (which
    gains the review queue's and the auto labels' sizes)."""
    consistent = ballot.consistent
    review, review_meta = _review_queue(ballot)
    auto = pairs_to_annotations(
        ballot.pairs.select(consistent), ballot.ids, ballot.votes[0][consistent]
    )
    metrics["n_review"] = review_meta["n_pairs"]
    metrics["n_auto_labels"] = int(sum(len(v) for v in auto.values()))

    _write_parquet(out / PAIRS_FILE, _pairs_table(ballot))
    write_annotations(out / REVIEW_FILE, review)
    write_json(out / REVIEW_META_FILE, review_meta)
    write_annotations(out / AUTO_LABELS_FILE, auto)
    write_json(out / METRICS_FILE, metrics)


def _write_report(out: Path, ballot: _Ballot, dmap_rgb, metrics, kind_rates, config) -> None:
    """report.html, summary.md and the most contested image's pictures."""
    panels = _report_panels(ballot, dmap_rgb, config)
    agreement = pairwise_agreement(ballot.votes)
    atomic_write(
        out / REPORT_FILE,
        render_html(metrics, ballot.names, agreement, panels, kind_rates=kind_rates),
    )
    thumb = None
    if panels:  # top-level pictures of the most contested image, for UIs that list PNGs
        atomic_write(out / CONTESTED_PAIRS_PNG, png_bytes(panels[0].pairs_drawn))
        atomic_write(out / CONTESTED_MAP_PNG, png_bytes(panels[0].disagreement))
        pic = panels[0].pairs_drawn
        thumb = resize(pic, min(1.0, 160.0 / max(pic.shape[:2])))
    atomic_write(out / SUMMARY_FILE, render_markdown(metrics, ballot.names, thumb))


def _report_panels(ballot: _Ballot, dmap_rgb, config: AgreementConfig) -> list:
    """One panel per reported image, most contested first (lowest agreement, then highest
    map disagreement)."""
    n_img = len(ballot.images)
    pairs, consistent, per_image = ballot.pairs, ballot.consistent, ballot.mean_disagreement
    counts = np.bincount(pairs.image_index, minlength=n_img)
    agree_counts = np.bincount(pairs.image_index, weights=consistent, minlength=n_img)
    img_rate = np.where(counts > 0, agree_counts / np.maximum(counts, 1), 1.0)
    order = sorted(
        range(n_img), key=lambda i: (img_rate[i], -np.nan_to_num(per_image[i]), ballot.ids[i])
    )
    panels = []
    for i in order[: config.report_images]:
        sel = np.flatnonzero((pairs.image_index == i) & ~consistent)
        stats = {
            "pairs": int(counts[i]),
            "agreement rate": float(img_rate[i]),
            "disagreement pairs": len(sel),
        }
        if np.isfinite(per_image[i]):
            stats["mean disagreement"] = float(per_image[i])
        panels.append(
            build_panel(
                ballot.ids[i],
                np.asarray(ballot.images[i], np.uint8),
                dict(zip(ballot.names, ballot.expert_maps(i))),
                dmap_rgb[i],
                pairs.point1[sel],
                pairs.point2[sel],
                ballot.majority[sel],
                stats,
                max_pairs=config.report_pairs_per_image,
            )
        )
    return panels
