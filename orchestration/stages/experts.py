"""The models a report scores: the teacher, a student, or a checkpoint path, by their params entry."""

from __future__ import annotations

from pathlib import Path

from depth_core.models.checkpoint import CHECKPOINT_FILE
from orchestration.lineage import paths as L
from orchestration.lineage.stage_id import expert_student
from orchestration.params.schema import expert_name, resolve_path
from orchestration.stages import teacher_source
from orchestration.stages.base import StageContext


def model_path(ctx: StageContext, entry: str) -> Path:
    """The file (or, for a teacher from Hugging Face, the folder) of an `agreement.experts`-style
    entry: 'teacher', 'student:<name>' or a path; an error names it when it does not exist."""
    student = expert_student(entry)
    if entry == "teacher":
        path = teacher_source.teacher_model_path(ctx.paths.inp(L.TEACHER))
    elif student is not None:
        path = ctx.paths.inp(ctx.paths.student(student)) / CHECKPOINT_FILE
    else:
        path = resolve_path(entry, ctx.paths.default_root)  # as params validation does
    if not path.exists():
        raise FileNotFoundError(f"{expert_name(entry)!r}: checkpoint {path} does not exist")
    return path


def expert_checkpoints(ctx: StageContext) -> dict[str, Path]:
    """The voters of `agreement.experts`, keyed by display name."""
    experts = {}
    for entry in ctx.params.agreement.experts:
        try:
            experts[expert_name(entry)] = model_path(ctx, entry)
        except FileNotFoundError as error:
            raise FileNotFoundError(f"agreement expert {error}") from None
    return experts
