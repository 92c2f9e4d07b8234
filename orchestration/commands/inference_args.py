"""The flags of every command that runs a model (predict, evaluate, evaluate-pairs): one
spelling, and the one precision default of `depth_core.inference`."""

from __future__ import annotations

import argparse

from depth_core.inference import AMP_CHOICES, DEFAULT_AMP, check_scales


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N")
    parser.add_argument(
        "--amp",
        default=DEFAULT_AMP,
        choices=AMP_CHOICES,
        help=f"precision (default {DEFAULT_AMP}, on every device); auto = bf16 on CUDA with "
        "bf16 and on CPUs with native bf16, fp32 elsewhere",
    )
    parser.add_argument(
        "--flip-tta", action="store_true", help="average with the mirrored prediction"
    )
    parser.add_argument(
        "--scales",
        type=_scale,
        nargs="+",
        default=[1.0],
        metavar="FACTOR",
        help="multi-scale test-time augmentation: average the predictions at these input "
        "resize factors, as `pseudo_labels.scales` does (default: 1.0)",
    )


def _scale(text: str) -> float:
    """One --scales factor, checked as the pseudo-label stage checks its own."""
    try:
        return check_scales([float(text)])[0]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
