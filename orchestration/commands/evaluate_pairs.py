"""`depth-distill evaluate-pairs`: pair accuracy of a checkpoint on a DA-2K-format benchmark.

The official DA-2K release ships pairs but no evaluation code; this scores any checkpoint on
it (or on a review queue / auto-labels file the agreement report wrote): larger predicted
disparity = closer, a tie counts as wrong, missing images are skipped and counted. Images are
read and predicted as `depth-distill predict` reads and predicts them, so scoring its .npy
outputs on the same pairs gives the same accuracy.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from depth_core.inference import DEFAULT_AMP, load_for_inference
from orchestration.commands.inference_args import add_inference_arguments


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "evaluate-pairs",
        help="pair accuracy of a checkpoint on a DA-2K annotations.json",
        description="Predict every annotated image with the checkpoint and report the share "
        "of pairs whose closer point has the larger disparity, overall and per scene folder.",
    )
    parser.add_argument(
        "--checkpoint",
        required=True,
        type=Path,
        help="model .safetensors, or a local Hugging Face depth-estimation folder",
    )
    parser.add_argument("--annotations", required=True, type=Path, help="DA-2K annotations.json")
    parser.add_argument("--images", required=True, type=Path, help="root the image paths are in")
    parser.add_argument("--json", type=Path, default=None, help="also write the result here")
    add_inference_arguments(parser)
    parser.set_defaults(func=_run)


def make_predictor(
    checkpoint: Path,
    device: str,
    batch_size: int,
    flip_tta: bool = False,
    amp: str = DEFAULT_AMP,
    scales: tuple[float, ...] = (1.0,),
):
    """Load the checkpoint as `predict` does; return images (list of uint8 (H, W, 3)) ->
    disparities, so a pair scores the same here as on `predict`'s .npy outputs."""
    model = load_for_inference(checkpoint, device, amp)

    def predict(images):
        return model.predict(images, batch_size=batch_size, flip_tta=flip_tta, scales=scales)

    return predict


def format_table(result: dict) -> str:
    """Plain-text table: one row per scene, then the overall row."""
    rows = [(scene, s["n_pairs"], s["accuracy"]) for scene, s in result["per_scene"].items()]
    rows.append(("all", result["n_pairs"], result["accuracy"]))
    width = max(len(r[0]) for r in rows + [("scene", 0, 0)])
    lines = [f"{'scene':<{width}}  {'pairs':>7}  {'accuracy':>8}"]
    for scene, n, acc in rows:
        acc_text = "-" if acc is None else f"{acc:.4f}"
        lines.append(f"{scene:<{width}}  {n:>7}  {acc_text:>8}")
    lines.append(
        f"images evaluated: {result['n_images']}, missing (skipped): "
        f"{result['n_missing_images']}, ties: {result['n_ties']}"
    )
    return "\n".join(lines)


def _run(args: argparse.Namespace) -> int:
    from depth_core.voting.da2k import Da2kFormatError, evaluate_pairs, load_annotations
    from orchestration.lineage.files import write_json_atomic

    if args.batch_size < 1:
        print(f"error: --batch-size must be >= 1, got {args.batch_size}", file=sys.stderr)
        return 2
    if not args.images.is_dir():
        print(f"error: --images {args.images} is not a directory", file=sys.stderr)
        return 2
    try:
        annotations = load_annotations(args.annotations)
    except (FileNotFoundError, Da2kFormatError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if not args.checkpoint.exists():
        print(f"error: --checkpoint {args.checkpoint} does not exist", file=sys.stderr)
        return 2
    try:
        predict = make_predictor(
            args.checkpoint, args.device, args.batch_size, args.flip_tta, args.amp, args.scales
        )
    except (OSError, ValueError, RuntimeError) as exc:  # CheckpointError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = evaluate_pairs(predict, annotations, args.images, batch_size=args.batch_size)
    result = {
        "checkpoint": str(args.checkpoint),
        "annotations": str(args.annotations),
        **result,
    }
    print(format_table(result))
    if args.json is not None:
        write_json_atomic(args.json, result)
        print(f"wrote {args.json}")
    return 0
