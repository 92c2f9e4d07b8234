"""The pseudo_labels stage: the teacher's disparity on every unlabeled image, sharded."""

from __future__ import annotations

import time

from orchestration.lineage import paths as L
from orchestration.stages import teacher_source
from orchestration.stages.base import (
    StageContext,
    StageResult,
    finish_stage,
    prepare_output,
    stage_device,
    write_preview,
)


def stage_pseudo_labels(ctx: StageContext) -> StageResult:
    from depth_core.pseudo_label import generate_pseudo_labels

    cfg = ctx.params.pseudo_labels
    out_dir = ctx.paths.out(L.PSEUDO_LABELS)
    device = stage_device(ctx.params)
    prepare_output(
        out_dir,
        cfg.model_dump(mode="json"),
        [ctx.paths.inp(L.TEACHER), ctx.paths.inp(L.UNLABELED)],
        code="pseudo_labels",
    )
    start = time.perf_counter()
    stats = generate_pseudo_labels(
        checkpoint=teacher_source.teacher_model_path(ctx.paths.inp(L.TEACHER)),
        unlabeled_dir=ctx.paths.inp(L.UNLABELED),
        out_dir=out_dir,
        batch_size=cfg.batch_size,
        device=device,
        amp=cfg.amp,
        flip_tta=cfg.flip_tta,
        scales=cfg.scales,
    )
    preview = write_preview(out_dir, ctx.paths.report_dir("pseudo_labels") / "preview.png")
    metrics = {**stats, "stage_seconds": time.perf_counter() - start}
    return finish_stage(ctx, "pseudo_labels", metrics, [out_dir], {"preview": preview})
