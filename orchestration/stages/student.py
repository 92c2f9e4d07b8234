"""The student stage (one per entry of `students`), and the labeled-only control that shows
what the pseudo-labels add."""

from __future__ import annotations

from orchestration.lineage import paths as L
from orchestration.lineage.stage_id import StageId, expert_entry
from orchestration.stages.base import StageContext, StageResult, student_config
from orchestration.stages.training import train_stage


def stage_student(ctx: StageContext, name: str) -> StageResult:
    cfg = student_config(ctx, name)
    pseudo = [(ctx.paths.inp(L.UNLABELED), ctx.paths.inp(L.PSEUDO_LABELS))]
    return train_stage(
        ctx,
        StageId.of_student(name),
        "student",
        cfg,
        ctx.paths.student(name),
        pseudo,
        f"student {name}",
    )


def train_control(ctx: StageContext, name: str, steps: int) -> StageResult:
    """Student `name`'s config trained on the labeled data alone for `steps` steps: the
    control that shows what the pseudo-labels add (same architecture, same step budget)."""
    cfg = student_config(ctx, name)
    # Labeled epochs are shorter than pseudo-label epochs: enough of them, cut at `steps`.
    cfg = cfg.model_copy(update={"epochs": max(cfg.epochs, steps), "max_steps": steps})
    return train_stage(
        ctx,
        StageId("control", name),
        "control",
        cfg,
        ctx.paths.control(name),
        None,
        f"control {name} (labeled only)",
        info={"control_of": expert_entry(name)},
    )
