"""`depth-distill stage NAME`: run one lineage step (what dvc.yaml's commands call)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from orchestration.stages.registry import STAGE_NAMES


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "stage",
        help="run one stage of the lineage",
        description="Run one lineage step with params.yaml; outputs go to the fixed paths "
        "dvc.yaml declares.",
    )
    parser.add_argument("name", choices=STAGE_NAMES)
    parser.add_argument(
        "--student", help="which entry of `students` (stages 'student' and 'export')"
    )
    parser.add_argument("--params", default="params.yaml", type=Path)
    parser.add_argument("--root", default=".", type=Path, help="repository root")
    parser.add_argument(
        "--runner",
        default="cli",
        choices=["cli", "dvc", "dagster"],
        help="recorded as the MLflow 'runner' tag",
    )
    parser.add_argument(
        "-S",
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a parameter (repeatable)",
    )
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from orchestration.lineage.paths import default_paths
    from orchestration.params.schema import load_params
    from orchestration.stages.base import StageContext
    from orchestration.stages.registry import run_stage

    params = load_params(args.params, args.overrides)
    ctx = StageContext(params=params, paths=default_paths(args.root), runner=args.runner)
    result = run_stage(args.name, ctx, student=args.student)
    print(json.dumps({"stage": result.stage, **result.metrics}, indent=2, default=str))
    return 0
