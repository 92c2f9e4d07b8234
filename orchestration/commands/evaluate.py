"""`depth-distill evaluate`: metrics of one or more checkpoints on RGB-D ground truth.

`--data` is either a folder of RGB images paired with depth maps (the importer's conventions:
pairing by file name, `--depth-scale` for 16-bit PNGs, `--disparity` for disparity maps; the
pairs it would skip are skipped with its codes) or a sharded dataset directory. Folder images are evaluated at their original resolution. Every
model is scored on the same images and the same point pairs as the trivial row-prior baseline
("lower in the image is nearer"); the result is printed as a table and optionally saved as JSON.
A checkpoint is a depth-distill .safetensors file or a local Hugging Face depth-estimation folder
(Depth Anything V1/V2, DPT), which runs at its own processor's resolution.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from depth_core.atomic_io import write_json
from depth_core.data.importers import (
    DatasetImportError,
    RGBDImportConfig,
    SkippedFile,
    read_rgbd_pair,
    scan_rgbd_pairs,
)
from depth_core.data.manifest import is_dataset_complete
from depth_core.evaluation import (
    MetricAccumulator,
    evaluate_model,
    evaluate_row_prior,
    ground_truth_problem,
)
from depth_core.inference import InferenceModel, load_for_inference
from depth_core.metrics import row_prior_disparity
from depth_core.models import CheckpointError
from orchestration.commands.data import add_depth_convention_arguments, depth_convention_options
from orchestration.commands.inference_args import add_inference_arguments

BASELINE = "row-prior baseline"
COLUMNS = ("abs_rel", "delta1", "pair_accuracy", "inverted_fraction", "n_images")
CHUNK = 16  # images read, predicted and scored at a time: memory stays flat on big folders
UNUSABLE = "unusable_ground_truth"  # the skip code of ground truth that cannot be scored


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "evaluate",
        help="evaluate checkpoints on a folder of RGB-D pairs (or a dataset)",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        action="append",
        metavar="[NAME=]CKPT",
        help="model checkpoint or Hugging Face depth-estimation folder; repeat to compare several",
    )
    parser.add_argument(
        "--data", required=True, help="folder of RGB-D pairs, or a dataset directory"
    )
    parser.add_argument("--json", default=None, help="also write the results to this JSON file")
    add_depth_convention_arguments(parser)
    add_inference_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def _named_checkpoints(entries: list[str]) -> dict[str, Path]:
    """NAME=PATH, or PATH named after its file (or its folder, for model.safetensors)."""
    named: dict[str, Path] = {}
    for entry in entries:
        name, _, path = entry.partition("=") if "=" in entry else ("", "", entry)
        path = Path(path)
        if not name:
            name = path.parent.name if path.stem == "model" and path.parent.name else path.stem
        if name in named:
            raise ValueError(
                f"two checkpoints are named {name!r}; use NAME=PATH to tell them apart"
            )
        named[name] = path
    return named


def _read_usable_pairs(
    pairs: list[tuple[Path, Path]], data: Path, config: RGBDImportConfig, skipped: list
) -> tuple[list, list, list]:
    """Images, depths and masks of the pairs the importer would accept and whose ground truth
    can score a prediction; the rest to `skipped` with the reason."""
    images, depths, masks = [], [], []
    for image_path, depth_path in pairs:
        name = image_path.relative_to(data).as_posix()
        try:
            image, depth, mask = read_rgbd_pair(image_path, depth_path, config)
        except SkippedFile as skip:
            skipped.append(skip.entry(name))
            continue
        problem = ground_truth_problem(depth, mask)
        if problem is not None:
            skipped.append({"file": name, "code": UNUSABLE, "reason": problem})
            continue
        images.append(image)
        depths.append(depth)
        masks.append(mask)
    return images, depths, masks


def evaluate_folder(
    models: dict[str, InferenceModel], data: Path, config: RGBDImportConfig, args
) -> dict[str, Any]:
    """Original-resolution metrics of every model and the baseline on a folder of RGB-D pairs."""
    pairs, skipped = scan_rgbd_pairs(data, config)
    scores = {name: MetricAccumulator() for name in [*models, BASELINE]}
    bar = tqdm(total=len(pairs), unit="img", desc="evaluate", disable=args.quiet)
    for start in range(0, len(pairs), CHUNK):
        chunk = pairs[start : start + CHUNK]
        images, depths, masks = _read_usable_pairs(chunk, data, config, skipped)
        for name, model in models.items():
            predictions = model.predict(
                images, batch_size=args.batch_size, flip_tta=args.flip_tta, scales=args.scales
            )
            for pred, depth, mask in zip(predictions, depths, masks):
                scores[name].add(pred, depth, mask)
        for depth, mask in zip(depths, masks):
            scores[BASELINE].add(row_prior_disparity(*depth.shape).numpy(), depth, mask)
        bar.update(len(chunk))
    bar.close()
    if not scores[BASELINE].per_image:
        raise DatasetImportError(f"no usable RGB-D pair in {data} ({len(skipped)} files skipped)")
    return {"results": {name: acc.result() for name, acc in scores.items()}, "skipped": skipped}


def evaluate_dataset(models: dict[str, InferenceModel], data: Path, args) -> dict[str, Any]:
    """Metrics on a sharded dataset directory, its images predicted as `predict` predicts them."""
    results = {
        name: evaluate_model(
            model.model,
            data,
            batch_size=args.batch_size,
            device=model.device,
            amp=model.amp,
            flip_tta=args.flip_tta,
            scales=args.scales,
        )
        for name, model in models.items()
    }
    unusable: list[dict] = []
    results[BASELINE] = evaluate_row_prior(data, skipped=unusable)
    skipped = [
        {"file": f"image {entry['index']}", "code": UNUSABLE, "reason": entry["reason"]}
        for entry in unusable
    ]
    return {"results": results, "skipped": skipped}


def format_table(results: dict[str, dict[str, float]]) -> str:
    width = max(len(name) for name in results)
    lines = [f"{'model':<{width}}  " + "  ".join(f"{c:>17}" for c in COLUMNS)]
    for name, values in results.items():
        cells = []
        for column in COLUMNS:
            value = values.get(column, math.nan)
            cells.append(
                f"{int(value):>17d}"
                if column == "n_images" and math.isfinite(value)
                else f"{value:>17.4f}"
            )
        lines.append(f"{name:<{width}}  " + "  ".join(cells))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    data = Path(args.data)
    try:
        checkpoints = _named_checkpoints(args.checkpoint)
        if args.batch_size < 1:
            raise ValueError("--batch-size must be >= 1")
        models = {
            name: load_for_inference(path, args.device, args.amp)
            for name, path in checkpoints.items()
        }
        if not data.is_dir():
            raise FileNotFoundError(f"--data {data} is not a folder")
        if is_dataset_complete(data):
            report = evaluate_dataset(models, data, args)
        else:
            config = RGBDImportConfig(**depth_convention_options(args))
            report = evaluate_folder(models, data, config, args)
    except (
        FileNotFoundError,
        CheckpointError,
        DatasetImportError,
        RuntimeError,
        ValueError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    report = {
        "data": str(data),
        "checkpoints": {k: str(v) for k, v in checkpoints.items()},
        **report,
    }
    print(format_table(report["results"]))
    if report["skipped"]:
        print(f"skipped {len(report['skipped'])} file(s):")
        for entry in report["skipped"]:
            print(f"  {entry['file']}: {entry['reason']} [{entry['code']}]")
    if args.json:
        print(f"wrote {write_json(Path(args.json), report)}")
    return 0
