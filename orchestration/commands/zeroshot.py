"""`depth-distill zeroshot`: checkpoints on the field's zero-shot benchmarks, as the papers
score them, printed beside the published Depth Anything V2 figures."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from depth_core.zeroshot.suite import SUITES, SUITES_WITH_SPLITS
from orchestration.commands.inference_args import add_inference_arguments


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "zeroshot",
        help="zero-shot AbsRel / delta1 (and DA-2K accuracy) of checkpoints on public benchmarks",
        description="Predict every test image at the model's resolution, resize to the ground "
        "truth, fit scale and shift per image in disparity space, clamp to the benchmark's depth "
        "range inside its crop, and average AbsRel and delta1 over images.",
    )
    parser.add_argument(
        "--checkpoint",
        action="append",
        required=True,
        type=Path,
        help="model .safetensors, Hugging Face folder or ONNX export (repeatable)",
    )
    parser.add_argument(
        "--suite",
        action="extend",
        nargs="+",
        required=True,
        choices=SUITES,
        metavar="SUITE",
        help=f"one or more of {', '.join(SUITES)}",
    )
    parser.add_argument(
        "--root",
        action="append",
        required=True,
        metavar="DIR | NAME=DIR",
        help="the benchmark's folder as published; NAME=DIR once per suite when several run",
    )
    parser.add_argument(
        "--split",
        action="append",
        default=[],
        metavar="NAME=FILE",
        help=f"another split file for {', '.join(SUITES_WITH_SPLITS)} (default: the one the "
        "benchmark's folder holds)",
    )
    parser.add_argument("--max-images", type=int, default=None, help="first N images of each")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    add_inference_arguments(parser)
    parser.set_defaults(func=_run, batch_size=4)


def parse_named(values: list[str], suites: list[str], flag: str) -> dict[str, Path]:
    """`NAME=PATH` items, or one bare PATH when exactly one suite runs."""
    named: dict[str, Path] = {}
    for value in values:
        name, sep, path = value.partition("=")
        if sep and name in SUITES:
            named[name] = Path(path)
        elif len(suites) == 1 and len(values) == 1:
            named[suites[0]] = Path(value)
        else:
            raise ValueError(
                f"{flag} {value!r}: use NAME=PATH with NAME one of {', '.join(SUITES)} "
                "(a bare path only when one suite runs)"
            )
    return named


def _run(args: argparse.Namespace) -> int:
    from depth_core.inference import load_for_inference
    from depth_core.zeroshot.report import format_table, skip_counts, summary
    from depth_core.zeroshot.suite import check_roots, run_suite
    from orchestration.lineage.files import write_json_atomic

    suites = list(dict.fromkeys(args.suite))
    if args.batch_size < 1:
        print(f"error: --batch-size must be >= 1, got {args.batch_size}", file=sys.stderr)
        return 2
    try:
        roots = parse_named(args.root, suites, "--root")
        splits = parse_named(args.split, suites, "--split") if args.split else {}
        benchmarks, skipped = check_roots(suites, roots, splits)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, reason in skipped.items():
        print(f"skipping {name}: {reason}", file=sys.stderr)
    missing = [str(c) for c in args.checkpoint if not c.exists()]
    if missing:
        print(f"error: --checkpoint {', '.join(missing)} does not exist", file=sys.stderr)
        return 2
    if not benchmarks:
        print("error: no benchmark could run (see the messages above)", file=sys.stderr)
        return 1

    def loader(checkpoint: Path):
        def load():
            model = load_for_inference(checkpoint, args.device, args.amp)
            return lambda images: model.predict(images, args.batch_size, args.flip_tta, args.scales)

        return load

    models = {str(c): loader(c) for c in args.checkpoint}
    results = run_suite(
        models, benchmarks, args.batch_size, args.max_images, progress=not args.quiet
    )
    for model, per_bench in results.items():
        for bench, values in per_bench.items():
            if values["n_skipped"]:
                print(f"{Path(model).name} {bench}: skipped {skip_counts(values)}")
                for entry in values["skipped"][:5]:
                    print(f"  {entry['file']}: {entry['reason']}")
    names = [b.name for b in benchmarks]
    print(format_table(results, names))
    if args.json is not None:
        write_json_atomic(args.json, summary(results))
        print(f"wrote {args.json}")
    return 0
