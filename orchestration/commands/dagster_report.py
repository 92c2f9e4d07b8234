"""`depth-distill dagster-report`: show Dagster what `dvc repro` did (`make run` calls it)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "dagster-report",
        help="report the stages dvc repro ran to the Dagster instance",
        description="For every stage whose dvc.lock entry the Dagster instance ($DAGSTER_HOME, "
        "else <root>/.dagster) has not seen, report a materialisation of its asset with the "
        "metadata a Dagster run records, and its checks' results. A dvc.lock state is never "
        "reported twice.",
    )
    parser.add_argument("--params", default="params.yaml", type=Path)
    parser.add_argument("--root", default=".", type=Path, help="repository root")
    parser.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from orchestration.dagster_app.report import instance_for, report_dvc_runs
    from orchestration.params.schema import load_params

    params = load_params(args.root / args.params)
    with instance_for(args.root) as instance:
        reported = report_dvc_runs(instance, args.root, params)
    print(f"dagster-report: {len(reported)} asset(s) reported" + (": " if reported else ""))
    for key in reported:
        print(f"  {key}")
    return 0
