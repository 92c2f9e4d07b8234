"""`depth-distill ablation`: what pretrained encoders and pseudo-labels each add.

Reads the main lineage's metrics (run `dvc repro` first) and trains the variants beside it in
`experiments/ablation-*` (see `orchestration.stages.ablation`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from orchestration.stages.ablation import REPORT_DIR, VARIANTS


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "ablation",
        help="train the from-scratch and labeled-only variants of the lineage and tabulate them",
        description="Train every model of the lineage from scratch, and each student's "
        "architecture on the labeled data alone with the student's step budget; compare them "
        f"with the main lineage in {REPORT_DIR}/.",
    )
    parser.add_argument("--params", default="params.yaml", type=Path)
    parser.add_argument("--root", default=".", type=Path, help="repository root")
    parser.add_argument(
        "--variant",
        dest="variants",
        action="append",
        choices=VARIANTS,
        help="run only this variant (repeatable; default: all)",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from orchestration.params.schema import load_params
    from orchestration.stages.ablation import run_ablation

    params = load_params(args.params)
    run_ablation(params, args.root, tuple(args.variants or VARIANTS))
    print((args.root / REPORT_DIR / "ablation.md").read_text())
    return 0
