"""Every stage of the lineage by name, and the one way any runner starts one: under its lock.

`depth-distill stage NAME` (what `dvc repro` runs), the CLI's other commands and the Dagster
assets all call `run_stage`, which holds an exclusive lock on the stage's outputs while it runs.
"""

from __future__ import annotations

from collections.abc import Callable

from orchestration.lineage.locks import output_lock
from orchestration.lineage.stage_id import PER_STUDENT, StageId
from orchestration.stages.agreement import stage_agreement
from orchestration.stages.base import StageContext, StageResult
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


def run_stage(name: str, ctx: StageContext, student: str | None = None) -> StageResult:
    """Run one stage while holding the lock on its outputs (every runner comes through here)."""
    if name not in STAGE_FUNCTIONS:
        raise KeyError(f"unknown stage {name!r}; stages: {', '.join(STAGE_NAMES)}")
    stage = StageId(name, student if name in PER_STUDENT else None)
    with output_lock(ctx.paths.root, stage.record, ctx.runner):
        if stage.student:
            return STAGE_FUNCTIONS[name](ctx, stage.student)
        return STAGE_FUNCTIONS[name](ctx)
