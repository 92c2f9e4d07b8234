"""`depth-distill export`: a checkpoint as one ONNX file, checked against PyTorch.

The graph takes an RGB batch (`--input-format float`: (B, 3, H, W) float32 in [0, 1], the
default; `uint8`: (B, H, W, 3) uint8 as decoded), normalises and pads it inside, and returns
(B, H, W) disparity at the input size, with dynamic batch, height and width where the backbone
allows (else a fixed size, and the report says why). The export is written only after
onnxruntime matched PyTorch on rendered images of several sizes.
"""

from __future__ import annotations

import argparse
import json
import sys

from depth_core.export.config import ExportConfig

_DEFAULTS = ExportConfig()


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "export",
        help="export a checkpoint to ONNX (parity-checked against PyTorch)",
        description=__doc__.splitlines()[0],
    )
    parser.add_argument("--checkpoint", required=True, help="depth-distill .safetensors file")
    parser.add_argument("--output", required=True, help="the .onnx file to write")
    parser.add_argument(
        "--input-format", choices=["float", "uint8"], default=_DEFAULTS.input_format
    )
    parser.add_argument(
        "--opset", type=int, default=_DEFAULTS.opset, help="ONNX opset (17 or newer)"
    )
    parser.add_argument(
        "--fixed-size",
        action="store_true",
        help="export at the training size (dynamic batch only) even where shapes could be dynamic",
    )
    parser.add_argument(
        "--tolerance",
        type=float,
        default=_DEFAULTS.parity_tolerance,
        help="largest accepted max relative difference",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from depth_core.export import ParityError, export_checkpoint
    from depth_core.models import CheckpointError

    try:
        config = ExportConfig(
            opset=args.opset, input_format=args.input_format, parity_tolerance=args.tolerance
        )
        report = export_checkpoint(
            args.checkpoint, args.output, config, dynamic=not args.fixed_size
        )
    except (CheckpointError, ParityError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if report.note:
        print(f"note: {report.note}", file=sys.stderr)
    print(json.dumps(report.as_dict(), indent=2))
    return 0
