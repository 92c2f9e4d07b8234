"""The DA-2K annotations.json format, and pair accuracy of any predictor on such a file.

The official DA-2K benchmark ships its pairs as one JSON object mapping an image path
(relative to the benchmark root, first folder = scene type) to a list of entries
``{"point1": [h, w], "point2": [h, w], "closer_point": "point1" | "point2"}``
with (row, column) pixel coordinates. The review queue and auto-labels of the expert vote are
written in exactly this format, so they can be fed back into any DA-2K tool, and
`evaluate_pairs` scores a predictor on the official file or on our own.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np

from depth_core.atomic_io import atomic_write
from depth_core.data.image_io import read_image
from depth_core.voting.pairs import KIND_ANNOTATED, PointPairs
from depth_core.voting.votes import judge

ENTRY_KEYS = ("point1", "point2", "closer_point")
CLOSER_VALUES = ("point1", "point2")

Annotations = dict[str, list[dict]]
PredictFn = Callable[[list[np.ndarray]], list[np.ndarray]]


class Da2kFormatError(ValueError):
    """An annotations file or mapping that does not follow the DA-2K schema."""


def _is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and np.isfinite(x)


def validate_annotations(mapping, source: str = "annotations") -> Annotations:
    """Check the DA-2K schema; errors name the source and the offending image key and entry."""
    if not isinstance(mapping, Mapping):
        raise Da2kFormatError(
            f"{source}: top level must be an object mapping image path -> list of pairs, "
            f"got {type(mapping).__name__}"
        )
    for key, entries in mapping.items():
        where = f"{source}: image {key!r}"
        if not isinstance(key, str) or not key:
            raise Da2kFormatError(f"{where}: image path must be a non-empty string")
        if not isinstance(entries, list):
            raise Da2kFormatError(
                f"{where}: value must be a list of pairs, got {type(entries).__name__}"
            )
        for j, entry in enumerate(entries):
            here = f"{where}, entry {j}"
            if not isinstance(entry, Mapping):
                raise Da2kFormatError(f"{here}: must be an object, got {type(entry).__name__}")
            missing = [k for k in ENTRY_KEYS if k not in entry]
            extra = sorted(set(entry) - set(ENTRY_KEYS))
            if missing or extra:
                raise Da2kFormatError(
                    f"{here}: keys must be exactly {list(ENTRY_KEYS)}"
                    + (f"; missing {missing}" if missing else "")
                    + (f"; unexpected {extra}" if extra else "")
                )
            for name in ("point1", "point2"):
                point = entry[name]
                if (
                    not isinstance(point, list)
                    or len(point) != 2
                    or not all(_is_number(v) and v >= 0 for v in point)
                ):
                    raise Da2kFormatError(
                        f"{here}: {name} must be [h, w] with two non-negative numbers, "
                        f"got {point!r}"
                    )
            if entry["closer_point"] not in CLOSER_VALUES:
                raise Da2kFormatError(
                    f"{here}: closer_point must be 'point1' or 'point2', "
                    f"got {entry['closer_point']!r}"
                )
    return mapping  # type: ignore[return-value]


def load_annotations(path: str | Path) -> Annotations:
    """Read and validate a DA-2K annotations.json."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotations file not found: {path}")
    try:
        mapping = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise Da2kFormatError(f"{path}: not valid JSON ({exc})") from exc
    return validate_annotations(mapping, str(path))


def write_annotations(path: str | Path, mapping: Mapping[str, list[dict]]) -> Path:
    """Validate and write (atomically) a DA-2K annotations.json; load_annotations gives back
    an equal mapping."""
    validate_annotations(mapping, str(path))
    return atomic_write(path, format_annotations(mapping))


def format_annotations(mapping: Mapping[str, list[dict]]) -> str:
    """JSON text with one pair per line: diffable and easy to review by hand."""
    if not mapping:
        return "{}\n"
    blocks = []
    for key, entries in mapping.items():
        lines = ",\n".join(f"    {json.dumps(e, allow_nan=False)}" for e in entries)
        body = f"[\n{lines}\n  ]" if entries else "[]"
        blocks.append(f"  {json.dumps(key)}: {body}")
    return "{\n" + ",\n".join(blocks) + "\n}\n"


def annotations_to_pairs(
    mapping: Mapping[str, list[dict]], image_keys: Sequence[str]
) -> tuple[PointPairs, np.ndarray]:
    """Pairs of the images in `image_keys` (in that order) -> (pairs, closer (P,) int8 in
    {1, 2}). Coordinates are rounded to the nearest pixel; images without entries get none."""
    index = {key: i for i, key in enumerate(image_keys)}
    img, p1, p2, closer = [], [], [], []
    for key, entries in mapping.items():
        if key not in index:
            continue
        for entry in entries:
            img.append(index[key])
            p1.append(entry["point1"])
            p2.append(entry["point2"])
            closer.append(1 if entry["closer_point"] == "point1" else 2)
    if not img:
        return PointPairs.empty(), np.zeros(0, np.int8)
    pairs = PointPairs.build(
        img, np.rint(np.asarray(p1, float)), np.rint(np.asarray(p2, float)), KIND_ANNOTATED
    )
    order = np.argsort(pairs.image_index, kind="stable")
    return pairs.select(order), np.asarray(closer, np.int8)[order]


def pairs_to_annotations(
    pairs: PointPairs, image_keys: Sequence[str], closer: np.ndarray
) -> Annotations:
    """DA-2K mapping of the pairs with a decided `closer` (1 or 2); pairs with 0 are left out.
    Images appear in first-pair order, entries in pair order."""
    closer = np.asarray(closer)
    mapping: Annotations = {}
    keep = np.flatnonzero(closer != 0)
    for i in keep:
        key = str(image_keys[int(pairs.image_index[i])])
        mapping.setdefault(key, []).append(
            {
                "point1": [int(v) for v in pairs.point1[i]],
                "point2": [int(v) for v in pairs.point2[i]],
                "closer_point": "point1" if closer[i] == 1 else "point2",
            }
        )
    return mapping


def scene_of(image_key: str) -> str | None:
    """DA-2K keeps each scene type in its own folder: 'indoor/0001.jpg' -> 'indoor'."""
    parts = Path(image_key).parts
    return parts[0] if len(parts) > 1 else None


def evaluate_pairs(
    predictions: PredictFn | Mapping[str, np.ndarray],
    annotations: Mapping[str, list[dict]] | str | Path,
    image_dir: str | Path | None = None,
    batch_size: int = 8,
) -> dict:
    """Pair accuracy of a predictor on a DA-2K-format file (larger disparity = closer).

    predictions: either a function taking a list of uint8 (H, W, 3) images and returning their
    (H, W) disparities (images are read from image_dir / key as `depth-distill predict` reads
    them: upright by their EXIF orientation), or a mapping key -> disparity
    map. Images that are missing (file or mapping entry) are skipped and counted; a tie counts
    as wrong. Returns accuracy, n_pairs, n_correct, n_ties, n_images, n_missing_images,
    missing_images and per_scene {scene: {accuracy, n_pairs, n_correct}} (when keys have a
    scene folder). accuracy is None when no pair was evaluated.
    """
    if not isinstance(annotations, Mapping):
        annotations = load_annotations(annotations)
    else:
        validate_annotations(annotations)
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    keys = [k for k, entries in annotations.items() if entries]
    missing: list[str] = []
    found: list[str] = []
    if callable(predictions):
        if image_dir is None:
            raise ValueError("evaluate_pairs: image_dir is required with a predict function")
        root = Path(image_dir)
        found = [k for k in keys if (root / k).is_file()]
        missing = [k for k in keys if not (root / k).is_file()]
    else:
        found = [k for k in keys if k in predictions]
        missing = [k for k in keys if k not in predictions]

    per_scene: dict[str, dict] = {}
    n_pairs = n_correct = n_ties = 0
    for start in range(0, len(found), batch_size):
        batch = found[start : start + batch_size]
        if callable(predictions):
            images = [read_image(Path(image_dir) / k) for k in batch]
            maps = list(predictions(images))
            if len(maps) != len(batch):
                raise ValueError(f"predict function returned {len(maps)} maps for {len(batch)}")
            for k, img, m in zip(batch, images, maps):
                if np.shape(m) != img.shape[:2]:
                    raise ValueError(
                        f"{k}: prediction shape {np.shape(m)} != image shape {img.shape[:2]}"
                    )
        else:
            maps = [np.asarray(predictions[k]) for k in batch]
        pairs, closer = annotations_to_pairs({k: annotations[k] for k in batch}, batch)
        try:
            votes = judge([maps], pairs)[0]
        except ValueError as exc:
            raise ValueError(f"annotations: {exc} (images {batch})") from exc
        correct = votes == closer
        n_pairs += len(votes)
        n_correct += int(correct.sum())
        n_ties += int((votes == 0).sum())
        for i, key in enumerate(batch):
            scene = scene_of(key)
            if scene is None:
                continue
            sel = pairs.image_index == i
            stats = per_scene.setdefault(scene, {"n_pairs": 0, "n_correct": 0})
            stats["n_pairs"] += int(sel.sum())
            stats["n_correct"] += int(correct[sel].sum())
    for stats in per_scene.values():
        stats["accuracy"] = stats["n_correct"] / stats["n_pairs"] if stats["n_pairs"] else None
    return {
        "accuracy": n_correct / n_pairs if n_pairs else None,
        "n_pairs": n_pairs,
        "n_correct": n_correct,
        "n_ties": n_ties,
        "n_images": len(found),
        "n_missing_images": len(missing),
        "missing_images": missing,
        "per_scene": dict(sorted(per_scene.items())),
    }
