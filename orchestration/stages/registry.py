"""Every stage of the lineage by name, and the one way any runner starts one: under its lock.

`depth-distill stage NAME` (what `dvc repro` runs), the CLI's other commands and the Dagster
assets all call `run_stage`, which holds an exclusive lock on the stage's outputs while it runs.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from orchestration.lineage.dvc_busy import dvc_users
from orchestration.lineage.dvc_file import stage_written
from orchestration.lineage.dvc_lock import LockState, lock_state
from orchestration.lineage.dvc_sync import commit_stage, is_dvc_repo
from orchestration.lineage.locks import OutputsBusy, output_lock
from orchestration.lineage.stage_id import PER_STUDENT, StageId
from orchestration.stages.agreement import stage_agreement
from orchestration.stages.base import StageContext, StageResult, distributed_rank
from orchestration.stages.data import stage_labeled_data, stage_target_eval, stage_unlabeled_images
from orchestration.stages.export import stage_export
from orchestration.stages.pseudo_labels import stage_pseudo_labels
from orchestration.stages.student import stage_student
from orchestration.stages.teacher import stage_teacher
from orchestration.stages.zeroshot import stage_zeroshot_report

# dvc.yaml's stages, in the order they run; `student` and `export` run once per student.
STAGE_FUNCTIONS: dict[str, Callable[..., StageResult]] = {
    "labeled_data": stage_labeled_data,
    "unlabeled_images": stage_unlabeled_images,
    "target_eval": stage_target_eval,
    "teacher": stage_teacher,
    "pseudo_labels": stage_pseudo_labels,
    "student": stage_student,
    "agreement": stage_agreement,
    "export": stage_export,
    "zeroshot_report": stage_zeroshot_report,
}
STAGE_NAMES = tuple(STAGE_FUNCTIONS)
# The heavy stages: they run under DEPTH_DISTILL_LAUNCHER (torchrun, srun) when it is set, and
# Dagster runs them through Pipes (orchestration.dagster_app.pipes).
LAUNCHED_STAGES = ("teacher", "pseudo_labels", "student")


@contextmanager
def _outputs_lock(ctx: StageContext, stage: StageId) -> Iterator[None]:
    """The lock on the stage's outputs; under torchrun rank 0 holds it for every rank (the
    others write only what rank 0 hands them, e.g. their own pseudo-label shards). On the
    default lineage, outputs another DVC process still hashes, or reads as deps, are busy too."""
    if distributed_rank() > 0:
        yield
        return
    with output_lock(ctx.paths.root, stage.record, ctx.runner):
        if not ctx.paths.is_experiment:
            users = dvc_users(ctx.paths.root, stage_written(stage.stage, stage.student))
            if users:
                raise OutputsBusy(
                    f"stage {stage.dvc}: DVC is using its outputs: {'; '.join(users)}; "
                    "wait for that run to finish"
                )
        yield


def run_stage(name: str, ctx: StageContext, student: str | None = None) -> StageResult:
    """Run one stage while holding the lock on its outputs (every runner comes through here)."""
    if name not in STAGE_FUNCTIONS:
        raise KeyError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}")
    stage = StageId(name, student if name in PER_STUDENT else None)
    with _outputs_lock(ctx, stage):
        if stage.student:
            return STAGE_FUNCTIONS[name](ctx, stage.student)
        return STAGE_FUNCTIONS[name](ctx)


def run_and_commit(
    stage: StageId, ctx: StageContext, commit: bool = True
) -> tuple[StageResult, LockState | None]:
    """Run the stage and, on the default lineage of a DVC repository, `dvc commit` it while its
    outputs are still locked (no other runner writes in between), so DVC and Dagster agree on
    what is up to date; returns what dvc.lock then holds (None when nothing was committed).
    A failed commit raises `DvcError` with DVC's reason."""
    root = ctx.paths.root
    with _outputs_lock(ctx, stage):
        result = run_stage(stage.stage, ctx, student=stage.student)
        if not commit or ctx.paths.is_experiment or distributed_rank() > 0 or not is_dvc_repo(root):
            return result, None
        commit_stage(root, stage.dvc)
        return result, lock_state(root, stage.dvc)
