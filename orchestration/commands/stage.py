"""`depth-distill stage NAME`: run one lineage step (what dvc.yaml's commands call).

The heavy stages (teacher, pseudo_labels, student) run under `DEPTH_DISTILL_LAUNCHER` when it is
set: the command starts itself again as `<launcher> -m orchestration.cli stage ...`, e.g. with
`DEPTH_DISTILL_LAUNCHER="torchrun --standalone --nproc_per_node 4"` on one node or an
`srun torchrun ...` template under Slurm. The launcher is configuration of where the stage runs,
not a parameter: it is in no params file and no fingerprint, so changing it reruns nothing.
Unset, every stage runs in this process. Launched by a Dagster asset through Pipes (runner
`dagster`), the stage is `dvc commit`ted and its materialisation reported back by rank 0.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from orchestration.stages.registry import LAUNCHED_STAGES, STAGE_NAMES

LAUNCHER_ENV = "DEPTH_DISTILL_LAUNCHER"
LAUNCHED_ENV = "DEPTH_DISTILL_LAUNCHED"  # set in the launched processes: they run the stage


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "stage",
        help="run one stage of the lineage",
        description="Run one lineage step with params.yaml; outputs go to the fixed paths "
        f"dvc.yaml declares. {', '.join(LAUNCHED_STAGES)} run under ${LAUNCHER_ENV} when set "
        "(e.g. 'torchrun --standalone --nproc_per_node 2').",
    )
    parser.add_argument("name", choices=STAGE_NAMES)
    parser.add_argument(
        "--student", help="which entry of `students` (stages 'student' and 'export')"
    )
    parser.add_argument("--params", default="params.yaml", type=Path)
    parser.add_argument(
        "--profile", help="use this profile's merge (profiles/NAME.yaml) instead of --params"
    )
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
    parser.add_argument("--experiment", help="write under experiments/NAME/ (a Dagster experiment)")
    parser.add_argument("--pipeline-key", help="the MLflow parent run this stage joins")
    parser.add_argument(
        "--no-dvc-commit",
        action="store_true",
        help="with --runner dagster: do not `dvc commit` the stage after it ran",
    )
    parser.set_defaults(func=_run)


def stage_argv(args: argparse.Namespace) -> list[str]:
    """The arguments that run the same stage again (in the launched processes)."""
    argv = ["stage", args.name, "--params", str(args.params), "--root", str(args.root)]
    argv += ["--runner", args.runner]
    for flag, value in (
        ("--student", args.student),
        ("--profile", args.profile),
        ("--experiment", args.experiment),
        ("--pipeline-key", args.pipeline_key),
    ):
        if value:
            argv += [flag, value]
    for item in args.overrides:
        argv += ["--set", item]
    if args.no_dvc_commit:
        argv.append("--no-dvc-commit")
    return argv


def launcher_command(launcher: str, argv: list[str]) -> list[str]:
    """`<launcher> -m orchestration.cli <argv>`; `torchrun` is this Python's own when it is not
    on PATH (`python -m torch.distributed.run`)."""
    words = shlex.split(os.path.expandvars(launcher))
    if not words:
        raise ValueError(f"{LAUNCHER_ENV} is set but empty")
    if words[0] == "torchrun" and shutil.which("torchrun") is None:
        words = [sys.executable, "-m", "torch.distributed.run", *words[1:]]
    return [*words, "-m", "orchestration.cli", *argv]


def _launch(launcher: str, args: argparse.Namespace) -> int:
    command = launcher_command(launcher, stage_argv(args))
    print(f"depth-distill stage {args.name}: {' '.join(command)}", file=sys.stderr, flush=True)
    env = {**os.environ, LAUNCHED_ENV: "1"}
    return subprocess.run(command, env=env, check=False).returncode


def _run(args: argparse.Namespace) -> int:
    launcher = os.environ.get(LAUNCHER_ENV, "").strip()
    if launcher and args.name in LAUNCHED_STAGES and not os.environ.get(LAUNCHED_ENV):
        return _launch(launcher, args)

    from orchestration.lineage.paths import default_paths, experiment_paths
    from orchestration.lineage.stage_id import PER_STUDENT, StageId
    from orchestration.params.profiles import profile_params
    from orchestration.params.schema import load_params
    from orchestration.stages.base import StageContext, distributed_rank
    from orchestration.stages.registry import run_and_commit

    if args.profile:
        params = profile_params(args.root, args.profile, args.overrides)
    else:
        params = load_params(args.params, args.overrides)
    paths = (
        experiment_paths(args.root, args.experiment)
        if args.experiment
        else default_paths(args.root)
    )
    ctx = StageContext(
        params=params,
        paths=paths,
        runner=args.runner,
        pipeline_key=args.pipeline_key,
        experiment=args.experiment,
    )
    stage = StageId(args.name, args.student if args.name in PER_STUDENT else None)
    commit = args.runner == "dagster" and not args.no_dvc_commit
    result, state = run_and_commit(stage, ctx, commit)
    if distributed_rank() > 0:
        return 0
    if args.runner == "dagster":
        from orchestration.dagster_app.pipes import report_materialization

        report_materialization(result, state)
    print(json.dumps({"stage": result.stage, **result.metrics}, indent=2, default=str))
    return 0
